// Every role assignment of the deployment. Built-in role definition ids are the same in every tenant;
// each one is named in a comment on its line (tests/unit/test_infra_consistency.py checks this).

@description('Principal (object) id of the app\'s user-assigned managed identity.')
param identityPrincipalId string

@description('Functions host storage account (AzureWebJobsStorage__*).')
param hostStorageAccountName string

@description('BOBO data storage account (BOBO_STORAGE__*); the same name as the host account when there is only one.')
param dataStorageAccountName string

@description('Application Insights component the app sends telemetry to.')
param applicationInsightsName string

@description('Key Vault holding the AtHoc secrets.')
param keyVaultName string

@description('Optional. Deployer allowed to set and rotate the AtHoc secrets.')
param deployerPrincipalId string = ''

@description('Optional. BOBO exporter identity; gets write access to the incoming container only.')
param exporterPrincipalId string = ''

@allowed([
  'ServicePrincipal'
  'User'
  'Group'
])
@description('Principal type of exporterPrincipalId.')
param exporterPrincipalType string = 'ServicePrincipal'

@description('Name of the incoming container (BOBO_INCOMING_CONTAINER).')
param incomingContainerName string

var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // Storage Blob Data Owner
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88' // Storage Queue Data Contributor
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3' // Storage Table Data Contributor
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb' // Monitoring Metrics Publisher
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6' // Key Vault Secrets User
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7' // Key Vault Secrets Officer
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe' // Storage Blob Data Contributor
}

// The app's identity on each storage account: blobs (host locks, deployment package, BOBO files),
// queues (blob trigger bookkeeping, poison queue) and tables (timer state, BOBO state).
var storageRolesForApp = [
  roles.storageBlobDataOwner
  roles.storageQueueDataContributor
  roles.storageTableDataContributor
]
var separateData = dataStorageAccountName != hostStorageAccountName

resource hostStorage 'Microsoft.Storage/storageAccounts@2024-01-01' existing = {
  name: hostStorageAccountName
}

resource dataStorage 'Microsoft.Storage/storageAccounts@2024-01-01' existing = {
  name: dataStorageAccountName
}

resource dataBlobService 'Microsoft.Storage/storageAccounts/blobServices@2024-01-01' existing = {
  parent: dataStorage
  name: 'default'
}

resource incomingContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2024-01-01' existing = {
  parent: dataBlobService
  name: incomingContainerName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource keyVault 'Microsoft.KeyVault/vaults@2024-11-01' existing = {
  name: keyVaultName
}

resource appOnHostStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for roleId in storageRolesForApp: {
    name: guid(hostStorage.id, identityPrincipalId, roleId)
    scope: hostStorage
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
      principalId: identityPrincipalId
      principalType: 'ServicePrincipal'
    }
  }
]

// With one account for both, the host loop above already covers it (an empty loop creates nothing).
resource appOnDataStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for roleId in (separateData ? storageRolesForApp : []): {
    name: guid(dataStorage.id, identityPrincipalId, roleId)
    scope: dataStorage
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
      principalId: identityPrincipalId
      principalType: 'ServicePrincipal'
    }
  }
]

// Telemetry with Entra ID authentication (APPLICATIONINSIGHTS_AUTHENTICATION_STRING; local auth is off).
resource appOnApplicationInsights 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, identityPrincipalId, roles.monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Read secret values for the @Microsoft.KeyVault(...) app settings, and nothing more. The vault holds only
// this app's secrets, so the vault is the scope (a secret-level scope would not survive a secret created
// after deployment).
resource appOnKeyVault 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(keyVault.id, identityPrincipalId, roles.keyVaultSecretsUser)
  scope: keyVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The deployer sets and rotates the AtHoc secrets (az keyvault secret set), which needs data-plane rights.
resource deployerOnKeyVault 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(keyVault.id, deployerPrincipalId, roles.keyVaultSecretsOfficer)
  scope: keyVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
    principalId: deployerPrincipalId
  }
}

// The BOBO exporter writes files into the incoming container and can reach nothing else.
resource exporterOnIncoming 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(exporterPrincipalId)) {
  name: guid(incomingContainer.id, exporterPrincipalId, roles.storageBlobDataContributor)
  scope: incomingContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: exporterPrincipalId
    principalType: exporterPrincipalType
  }
}
