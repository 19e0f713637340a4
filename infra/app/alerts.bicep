// Email alerts: an action group, metric alert rules on the app's OpenTelemetry metrics and log search
// alert rules on Application Insights.
//
// With OpenTelemetry (host.json telemetryMode, the default here) the app reports bobo.files.failed and
// bobo.files.oldest_pending_age as metrics, and two metric alerts say those conditions directly. In
// classic mode (useMetricAlerts=false) the log rules that read the same facts from the log lines are
// deployed instead. Either way one rule per condition: no condition mails twice.
//
// The queries read the app's log lines (docs/deployment.md, Alerts): the run summary at INFO with
// job_kind / outcome / counts, "file failed: ..." at ERROR, AtHoc authentication failures with
// error_kind=auth. Each field is read from customDimensions first and, failing that, from a
// `key=value` pair in the message text, so the rules work whether or not the worker forwards
// logging `extra` fields as custom dimensions. None of these queries has run against real data here.

@description('Region of the alert rules (that of Application Insights).')
param location string

@description('Tags for the resources.')
param tags object = {}

@description('Token used to name the resources.')
param resourceToken string

@description('Application Insights component the rules query.')
param applicationInsightsName string

@description('Email address(es), comma-separated.')
param alertEmail string

@description('Alert when a file has waited longer than this many minutes.')
@minValue(5)
param pendingAlertMinutes int = 30

@description('Alert on the app\'s bobo. metrics (OpenTelemetry mode). False: classic mode, the log-text rules only.')
param useMetricAlerts bool = true

var emails = filter(map(split(alertEmail, ','), email => trim(email)), email => !empty(email))

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: 'ag-bobo-${resourceToken}'
  location: 'Global'
  tags: tags
  properties: {
    groupShortName: 'bobosync'
    enabled: true
    emailReceivers: [
      for (email, i) in emails: {
        name: 'email-${i}'
        emailAddress: email
        useCommonAlertSchema: true
      }
    ]
  }
}

var failedTodayQuery = '''
// Files sent to the failed container today (UTC day). The app logs each one at ERROR as "file failed: ...".
traces
| where timestamp >= startofday(now())
| where severityLevel >= 3 and message startswith "file failed:"
| project timestamp, message, run_id = coalesce(tostring(customDimensions.run_id), extract(@"\brun_id=(\w+)", 1, message))
'''

var pendingQueryTemplate = '''
// A file has waited in incoming longer than the threshold, or no pipeline run reported at all
// (sweep_incoming runs every few minutes, so silence means the app is not running).
let threshold_seconds = {threshold_seconds};
let summaries = traces
    | where timestamp > ago(30m)
    | extend job_kind = coalesce(tostring(customDimensions.job_kind), extract(@"\bjob_kind=([\w-]+)", 1, message))
    | extend outcome = coalesce(tostring(customDimensions.outcome), extract(@"\boutcome=(\w+)", 1, message))
    | where job_kind == "process" and isnotempty(outcome)
    | extend oldest_pending_seconds = todouble(coalesce(tostring(customDimensions.oldest_pending_seconds), extract(@"\boldest_pending_seconds=([0-9.]+)", 1, message)));
let late = summaries
    | where oldest_pending_seconds > threshold_seconds
    | project timestamp, reason = strcat("a file has waited ", tolong(oldest_pending_seconds), " s in incoming");
let silent = print runs = toscalar(summaries | count)
    | where runs == 0
    | project timestamp = now(), reason = "no process run reported in the last 30 minutes";
union late, silent
'''

var silentQuery = '''
// No pipeline run reported at all in 30 minutes (sweep_incoming runs every few minutes, so silence means
// the app is not running). A file waiting too long is the metric alert's (bobo.files.oldest_pending_age).
traces
| where timestamp > ago(30m)
| extend job_kind = coalesce(tostring(customDimensions.job_kind), extract(@"\bjob_kind=([\w-]+)", 1, message))
| extend outcome = coalesce(tostring(customDimensions.outcome), extract(@"\boutcome=(\w+)", 1, message))
| where job_kind == "process" and isnotempty(outcome)
| summarize runs = count()
| where runs == 0
'''

var mappingQuery = '''
// No successful mapping sync in 48 hours (it runs once a day after BOBO_MAPPING_SYNC_HOUR, and before
// the first batch after a deployment). Returns one row when there was none.
traces
| where timestamp > ago(48h)
| extend job_kind = coalesce(tostring(customDimensions.job_kind), extract(@"\bjob_kind=([\w-]+)", 1, message))
| extend outcome = coalesce(tostring(customDimensions.outcome), extract(@"\boutcome=(\w+)", 1, message))
| where job_kind == "sync-mappings" and outcome == "success"
| summarize successes = count()
| where successes == 0
'''

var authQuery = '''
// AtHoc refused the service credentials (client id/secret or username/password): the app marks these error_kind=auth.
traces
| where timestamp > ago(15m)
| extend error_kind = coalesce(tostring(customDimensions.error_kind), extract(@"\berror_kind=(\w+)", 1, message))
| where error_kind == "auth"
| project timestamp, severityLevel, message
'''

var functionFailuresQuery = '''
// Function invocations that failed (an exception escaped a handler, or a timeout), with the exception if any.
requests
| where timestamp > ago(15m)
| where success == false
| join kind=leftouter (
    exceptions
    | where timestamp > ago(15m)
    | summarize exception = take_any(outerMessage) by operation_Id
  ) on operation_Id
| project timestamp, function_name = operation_Name, resultCode, exception
'''

var rules = [
  {
    name: 'files-failed-today'
    displayName: 'BOBO: files sent to failed today'
    description: 'At least one file went to the failed container today (UTC). Fires once per day; see `status` or the failed container for the reason, then `retry-failed` once fixed.'
    severity: 2
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    overrideQueryTimeRange: 'P1D'
    query: failedTodayQuery
    mode: 'classic' // in OpenTelemetry mode: the files-failed metric alert
  }
  {
    name: 'file-waiting-too-long'
    displayName: 'BOBO: file waiting longer than ${pendingAlertMinutes} minutes'
    description: 'A file has waited in the incoming container longer than the threshold, or the app reported no run in 30 minutes (AtHoc unreachable, app stopped, trigger broken).'
    severity: 2
    evaluationFrequency: 'PT15M'
    windowSize: 'PT30M'
    overrideQueryTimeRange: ''
    query: replace(pendingQueryTemplate, '{threshold_seconds}', string(pendingAlertMinutes * 60))
    mode: 'classic' // in OpenTelemetry mode: the oldest-pending-age metric alert and no-process-run
  }
  {
    name: 'no-process-run'
    displayName: 'BOBO: no process run in 30 minutes'
    description: 'The app reported no run in 30 minutes (app stopped, trigger broken, or storage unreachable before the run could start).'
    severity: 2
    evaluationFrequency: 'PT15M'
    windowSize: 'PT30M'
    overrideQueryTimeRange: ''
    query: silentQuery
    mode: 'metrics'
  }
  {
    name: 'mapping-sync-stale'
    displayName: 'BOBO: no successful mapping sync in 48 hours'
    description: 'The employee id to AtHoc login mapping has not been refreshed for 48 hours: new or moved staff are not matched.'
    severity: 2
    evaluationFrequency: 'PT1H'
    windowSize: 'PT1H'
    overrideQueryTimeRange: 'P2D'
    query: mappingQuery
    mode: 'both'
  }
  {
    name: 'athoc-auth-failures'
    displayName: 'BOBO: AtHoc authentication failures'
    description: 'AtHoc refused the API credentials. Check the client secret and password in Key Vault (rotation: docs/deployment.md).'
    severity: 1
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    overrideQueryTimeRange: ''
    query: authQuery
    mode: 'both'
  }
  {
    name: 'function-failures'
    displayName: 'BOBO: function invocation failures'
    description: 'A function invocation failed. The handlers catch AtHoc outages, so this points at a bug, bad settings or storage access.'
    severity: 1
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    overrideQueryTimeRange: ''
    query: functionFailuresQuery
    mode: 'both'
  }
]

var deployedRules = filter(rules, rule => rule.mode == 'both' || rule.mode == (useMetricAlerts ? 'metrics' : 'classic'))

resource alertRules 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [
  for rule in deployedRules: {
    name: 'alert-bobo-${rule.name}-${resourceToken}'
    location: location
    tags: tags
    kind: 'LogAlert'
    properties: {
      displayName: rule.displayName
      description: rule.description
      severity: rule.severity
      enabled: true
      scopes: [
        applicationInsights.id
      ]
      evaluationFrequency: rule.evaluationFrequency
      windowSize: rule.windowSize
      overrideQueryTimeRange: empty(rule.overrideQueryTimeRange) ? null : rule.overrideQueryTimeRange
      criteria: {
        allOf: [
          {
            query: rule.query
            timeAggregation: 'Count'
            operator: 'GreaterThan'
            threshold: 0
            failingPeriods: {
              numberOfEvaluationPeriods: 1
              minFailingPeriodsToAlert: 1
            }
          }
        ]
      }
      // Stateful: one notification when the condition starts, another when it clears.
      autoMitigate: true
      actions: {
        actionGroups: [
          actionGroup.id
        ]
      }
    }
  }
]

// The app's OpenTelemetry metrics (shared/telemetry.py) in Application Insights' metric namespace. They
// exist only once the app has sent them: skipMetricValidation lets the rules deploy before that.
var metricRules = [
  {
    name: 'oldest-pending-age'
    displayName: 'BOBO: file waiting longer than ${pendingAlertMinutes} minutes'
    description: 'The oldest file in incoming has waited longer than the threshold (AtHoc unreachable, the batch failing, a trigger broken). See `status`.'
    metricName: 'bobo.files.oldest_pending_age'
    timeAggregation: 'Maximum'
    threshold: pendingAlertMinutes * 60
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
  }
  {
    name: 'files-failed'
    displayName: 'BOBO: files sent to failed'
    description: 'At least one file went to the failed container in the last 15 minutes; see `status` or the workbook for the reason, then `retry-failed` once fixed.'
    metricName: 'bobo.files.failed'
    timeAggregation: 'Total'
    threshold: 0
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
  }
]

resource metricAlerts 'Microsoft.Insights/metricAlerts@2018-03-01' = [
  for rule in (useMetricAlerts ? metricRules : []): {
    name: 'alert-bobo-${rule.name}-${resourceToken}'
    location: 'global'
    tags: tags
    properties: {
      description: '${rule.displayName}. ${rule.description}'
      severity: 2
      enabled: true
      scopes: [
        applicationInsights.id
      ]
      evaluationFrequency: rule.evaluationFrequency
      windowSize: rule.windowSize
      criteria: {
        'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
        allOf: [
          {
            criterionType: 'StaticThresholdCriterion'
            name: rule.name
            metricNamespace: 'azure.applicationinsights'
            metricName: rule.metricName
            timeAggregation: rule.timeAggregation
            operator: 'GreaterThan'
            threshold: rule.threshold
            skipMetricValidation: true
          }
        ]
      }
      autoMitigate: true
      actions: [
        {
          actionGroupId: actionGroup.id
        }
      ]
    }
  }
]

output actionGroupId string = actionGroup.id
