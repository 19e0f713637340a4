// The monitoring workbook over Application Insights: files per hour, failures with reasons, AtHoc latency
// and errors, the pending backlog, mapping sync and cleanup history, rejected-row reasons, and one run's
// whole story by its run id. Its queries are checked against the Application Insights schema by
// tests/unit/test_kql.py (tools/kql_check.mjs, Kusto's own language service).

@description('Region of the workbook.')
param location string

@description('Tags for the resources.')
param tags object = {}

@description('Application Insights component the workbook reads.')
param applicationInsightsName string

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  // A workbook's name must be a GUID; this one is stable per component, so a new provision updates it.
  name: guid(applicationInsights.id, 'bobo-sync-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'BOBO Sync'
    category: 'workbook'
    sourceId: applicationInsights.id
    serializedData: replace(loadTextContent('workbook.json'), '__APPLICATION_INSIGHTS_ID__', applicationInsights.id)
  }
}

output id string = workbook.id
output url string = '${environment().portal}/#@${tenant().tenantId}/resource${workbook.id}/workbook'
