// BOBO Sync for Azure: everything `azd up` creates.
//
// Plain resource declarations with explicit API versions (no registry modules), so the templates can be
// reviewed by reading. What is and is not checked: docs/deployment.md, What is checked where.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; used to derive a short unique token for every resource name.')
param environmentName string

@minLength(1)
@description('Region for all resources. It must offer the Flex Consumption plan (az functionapp list-flexconsumption-locations).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Resource group name. Empty: rg-<environmentName>.')
param resourceGroupName string = ''

@description('Object id of the person running azd (azd sets AZURE_PRINCIPAL_ID). Used only to let them write the AtHoc secrets into Key Vault.')
param principalId string = ''

@description('Give the deployer (principalId) Key Vault Secrets Officer on the vault, so they can set and rotate the AtHoc secrets. Turn off where another team manages secrets.')
param allowDeployerKeyVaultWrite bool = true

// AtHoc connection (contract settings without defaults). The two secrets go to Key Vault only.
@description('AtHoc base URL, e.g. https://alerts.example.com (ATHOC_SERVER_URL).')
param athocServerUrl string

@description('AtHoc organization code (ATHOC_ORG_CODE).')
param athocOrgCode string

@description('AtHoc API application client id (ATHOC_CLIENT_ID).')
param athocClientId string

@description('AtHoc service account with the User Manager role (ATHOC_USERNAME).')
param athocUsername string

@secure()
@description('Optional. AtHoc API client secret, written to Key Vault when given. Leave empty and set it with az keyvault secret set after deployment (docs/deployment.md) to keep it out of every file.')
param athocClientSecret string = ''

@secure()
@description('Optional. AtHoc service account password, written to Key Vault when given. Same advice as athocClientSecret.')
param athocPassword string = ''

// App behaviour
@description('IANA time zone of BOBO clock times and of the AtHoc organization (BOBO_TIMEZONE).')
param boboTimezone string = 'UTC'

@description('Contract settings to change from their defaults (infra/app/app-settings.json), e.g. {"BOBO_MAX_RETRY_ATTEMPTS": "8"}. Change settings here, not in the portal: every azd provision rewrites the app settings.')
param appSettingOverrides object = {}

// Hosting
@description('Put BOBO data (containers, tables) in its own storage account, apart from the Functions host storage. false: one account for both.')
param separateDataStorage bool = true

@description('Storage redundancy of both accounts.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_RAGRS'
])
param storageSkuName string = 'Standard_LRS'

@description('Flex Consumption: most instances the app may scale out to. The app coordinates batches itself, so a small number is enough.')
// Flex Consumption has documented 40 as the lowest maximum instance count; a lower value may be refused.
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Flex Consumption instance memory in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Key Vault purge protection. Recommended for production; then azd down --purge cannot purge the vault (docs/deployment.md).')
param keyVaultPurgeProtection bool = false

// BOBO exporter access
@description('Optional. Object id of the BOBO exporter identity (managed identity, service principal, user or group). It gets Storage Blob Data Contributor on the incoming container and nothing else.')
param exporterPrincipalId string = ''

@description('Principal type of exporterPrincipalId.')
@allowed([
  'ServicePrincipal'
  'User'
  'Group'
])
param exporterPrincipalType string = 'ServicePrincipal'

// Alerts
@description('Optional. Email address(es), comma-separated, that receive the alerts. Empty: no action group and no alert rules are created.')
param alertEmail string = ''

@description('Alert when a file has waited in the incoming container longer than this many minutes.')
@minValue(5)
param pendingAlertMinutes int = 30

var abbrs = loadJsonContent('./abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}

// Contract defaults (mirror of shared/settings.py SETTINGS, kept equal by tests/unit/test_infra_consistency.py)
// with the operator's choices on top. Containers, tables, the Event Grid filter and the app settings all
// read this one object, so a renamed container cannot drift from the setting that names it.
var appSettingDefaults = loadJsonContent('./app/app-settings.json')
var boboSettings = union(appSettingDefaults, { BOBO_TIMEZONE: boboTimezone }, appSettingOverrides)
var boboContainerNames = [
  boboSettings.BOBO_INCOMING_CONTAINER
  boboSettings.BOBO_PROCESSED_CONTAINER
  boboSettings.BOBO_FAILED_CONTAINER
  boboSettings.BOBO_REJECTS_CONTAINER
]
// Mirror of shared/state.py TABLE_SUFFIXES. The code creates missing tables too; creating them here makes
// the first run after deployment cheaper and shows the tables to operators at once.
var boboTableSuffixes = [
  'files'
  'watermarks'
  'mappings'
  'runs'
  'jobstatus'
  'history'
]
var boboTableNames = [for suffix in boboTableSuffixes: '${boboSettings.BOBO_TABLE_PREFIX}${suffix}']

var functionAppName = '${abbrs.webSitesFunctions}bobo-${resourceToken}'
var deploymentStorageContainerName = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'
var hostStorageAccountName = '${abbrs.storageStorageAccounts}${resourceToken}'
var dataStorageAccountName = separateDataStorage ? '${abbrs.storageStorageAccounts}bobo${resourceToken}' : hostStorageAccountName
var keyVaultName = '${abbrs.keyVaultVaults}${resourceToken}'
var eventGridSystemTopicName = '${abbrs.eventGridSystemTopics}bobo-${resourceToken}'
var athocClientSecretName = 'athoc-client-secret'
var athocPasswordName = 'athoc-password'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}bobo-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
  }
}

// Functions host storage: deployment package, host locks and timer state. With separateDataStorage=false it
// also holds the BOBO containers and tables.
// The monitoring workbook (docs/operations.md, "In the Azure portal"); the status page links to it.
module workbook 'app/workbook.bicep' = {
  name: 'workbook'
  scope: rg
  params: {
    location: location
    tags: tags
    applicationInsightsName: monitoring.outputs.applicationInsightsName
  }
}

module hostStorage 'app/storage.bicep' = {
  name: 'hostStorage'
  scope: rg
  params: {
    name: hostStorageAccountName
    location: location
    tags: tags
    skuName: storageSkuName
    containers: separateDataStorage ? [deploymentStorageContainerName] : concat([deploymentStorageContainerName], boboContainerNames)
    tables: separateDataStorage ? [] : boboTableNames
  }
}

// BOBO data: the four containers (the exporter writes to incoming only) and the state tables.
module dataStorage 'app/storage.bicep' = if (separateDataStorage) {
  name: 'dataStorage'
  scope: rg
  params: {
    name: dataStorageAccountName
    location: location
    tags: tags
    skuName: storageSkuName
    containers: boboContainerNames
    tables: boboTableNames
  }
}

module keyVault 'app/keyvault.bicep' = {
  name: 'keyVault'
  scope: rg
  params: {
    name: keyVaultName
    location: location
    tags: tags
    enablePurgeProtection: keyVaultPurgeProtection
    athocClientSecretName: athocClientSecretName
    athocClientSecret: athocClientSecret
    athocPasswordName: athocPasswordName
    athocPassword: athocPassword
  }
}

// Every role assignment, in one place, each role id commented.
module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    identityPrincipalId: identity.outputs.principalId
    hostStorageAccountName: hostStorageAccountName
    dataStorageAccountName: dataStorageAccountName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    keyVaultName: keyVault.outputs.name
    deployerPrincipalId: allowDeployerKeyVaultWrite ? principalId : ''
    exporterPrincipalId: exporterPrincipalId
    exporterPrincipalType: exporterPrincipalType
    incomingContainerName: boboSettings.BOBO_INCOMING_CONTAINER
  }
  dependsOn: [
    hostStorage
    dataStorage
  ]
}

module processor 'app/processor.bicep' = {
  name: 'processor'
  scope: rg
  params: {
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    hostStorageAccountName: hostStorageAccountName
    dataStorageAccountName: dataStorageAccountName
    deploymentStorageContainerName: deploymentStorageContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    keyVaultName: keyVault.outputs.name
    athocClientSecretName: athocClientSecretName
    athocPasswordName: athocPasswordName
    athocServerUrl: athocServerUrl
    athocOrgCode: athocOrgCode
    athocClientId: athocClientId
    athocUsername: athocUsername
    boboSettings: boboSettings
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    workbookUrl: workbook.outputs.url
  }
  // The host starts as soon as the app exists: give its identity storage, Key Vault and App Insights access first.
  dependsOn: [
    rbac
  ]
}

// System topic on the data account. The subscription to ingest_csv is written by infra/hooks/postdeploy.* and
// kept in step with the settings by postprovision.*: its webhook URL needs the blobs_extension key, which
// exists only once the code is deployed.
module eventGrid 'app/eventgrid.bicep' = {
  name: 'eventGrid'
  scope: rg
  params: {
    name: eventGridSystemTopicName
    location: location
    tags: tags
    storageAccountName: dataStorageAccountName
  }
  dependsOn: [
    hostStorage
    dataStorage
  ]
}

module alerts 'app/alerts.bicep' = if (!empty(alertEmail)) {
  name: 'alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    alertEmail: alertEmail
    pendingAlertMinutes: pendingAlertMinutes
  }
}

// azd stores these in the environment; the post-deploy hooks read them.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = processor.outputs.name
output AZURE_FUNCTION_APP_HOSTNAME string = processor.outputs.defaultHostName
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output BOBO_DATA_STORAGE_ACCOUNT_NAME string = dataStorageAccountName
output BOBO_INCOMING_CONTAINER_NAME string = boboSettings.BOBO_INCOMING_CONTAINER
output BOBO_EVENTGRID_SYSTEM_TOPIC_NAME string = eventGrid.outputs.name
output ATHOC_CLIENT_SECRET_KV_NAME string = athocClientSecretName
output ATHOC_PASSWORD_KV_NAME string = athocPasswordName
output MONITORING_WORKBOOK_URL string = workbook.outputs.url
