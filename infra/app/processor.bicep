// The Flex Consumption plan and the function app (Python 3.11, Linux) with its app settings.

@description('Function app name.')
param name string

@description('Flex Consumption plan name.')
param planName string

@description('Region.')
param location string

@description('Tags for the resources.')
param tags object = {}

@description('Service name in azure.yaml: azd deploys the code to the app carrying this tag.')
param serviceName string = 'bobo-sync'

@description('Resource id of the user-assigned managed identity.')
param identityId string

@description('Client id of the user-assigned managed identity.')
param identityClientId string

@description('Functions host storage account.')
param hostStorageAccountName string

@description('BOBO data storage account (may be the host account).')
param dataStorageAccountName string

@description('Container in the host storage account that holds the deployment package.')
param deploymentStorageContainerName string

@description('Application Insights component.')
param applicationInsightsName string

@description('Key Vault holding the AtHoc secrets.')
param keyVaultName string

@description('Key Vault secret name of the AtHoc client secret.')
param athocClientSecretName string

@description('Key Vault secret name of the AtHoc password.')
param athocPasswordName string

@description('ATHOC_SERVER_URL.')
param athocServerUrl string

@description('ATHOC_ORG_CODE.')
param athocOrgCode string

@description('ATHOC_CLIENT_ID.')
param athocClientId string

@description('ATHOC_USERNAME.')
param athocUsername string

@description('Contract settings with their defaults and the operator overrides (main.bicep boboSettings).')
param boboSettings object

@description('Portal address of the monitoring workbook (workbook.bicep), linked from the status page.')
param workbookUrl string = ''

@description('Python version of the Flex Consumption runtime.')
param pythonVersion string = '3.11'

@description('Instance memory in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Most instances the app may scale out to.')
// Flex Consumption has documented 40 as the lowest maximum instance count; a lower value may be refused.
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

resource hostStorage 'Microsoft.Storage/storageAccounts@2024-01-01' existing = {
  name: hostStorageAccountName
}

resource dataStorage 'Microsoft.Storage/storageAccounts@2024-01-01' existing = {
  name: dataStorageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource keyVault 'Microsoft.KeyVault/vaults@2024-11-01' existing = {
  name: keyVaultName
}

// Settings without a default in shared/settings.py: parameters, and Key Vault references for the two secrets.
// Versionless secret URIs (trailing slash): a new secret version is picked up on restart or within 24 h.
var requiredSettings = {
  ATHOC_SERVER_URL: athocServerUrl
  ATHOC_ORG_CODE: athocOrgCode
  ATHOC_CLIENT_ID: athocClientId
  ATHOC_USERNAME: athocUsername
  ATHOC_CLIENT_SECRET: '@Microsoft.KeyVault(SecretUri=${keyVault.properties.vaultUri}secrets/${athocClientSecretName}/)'
  ATHOC_PASSWORD: '@Microsoft.KeyVault(SecretUri=${keyVault.properties.vaultUri}secrets/${athocPasswordName}/)'
}

// Azure-only settings; they come last so no override can replace them.
var platformSettings = {
  // Host storage, identity-based (shared-key access is off).
  AzureWebJobsStorage__blobServiceUri: hostStorage.properties.primaryEndpoints.blob
  AzureWebJobsStorage__queueServiceUri: hostStorage.properties.primaryEndpoints.queue
  AzureWebJobsStorage__tableServiceUri: hostStorage.properties.primaryEndpoints.table
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  // BOBO_STORAGE (docs/design.md#containers) in its identity-based form, read by the trigger binding and the code.
  BOBO_STORAGE__blobServiceUri: dataStorage.properties.primaryEndpoints.blob
  BOBO_STORAGE__queueServiceUri: dataStorage.properties.primaryEndpoints.queue
  BOBO_STORAGE__tableServiceUri: dataStorage.properties.primaryEndpoints.table
  BOBO_STORAGE__credential: 'managedidentity'
  BOBO_STORAGE__clientId: identityClientId
  // Flex Consumption supports only the Event Grid blob trigger source.
  BOBO_BLOB_TRIGGER_SOURCE: 'EventGrid'
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  // OpenTelemetry (host.json telemetryMode): the Python worker configures the Azure Monitor distro itself
  // (Learn, "Use OpenTelemetry with Azure Functions", Python); shared/telemetry.py then uses its providers.
  PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY: 'true'
  // Every span kept, failed ones included (the distro's default is a 5-traces-per-second rate limit).
  OTEL_TRACES_SAMPLER: 'microsoft.fixed_percentage'
  OTEL_TRACES_SAMPLER_ARG: '1.0'
  // AtHoc calls are reported by the app, path only (shared/telemetry.py athoc_dependency), not by these.
  OTEL_PYTHON_DISABLED_INSTRUMENTATIONS: 'requests,urllib,urllib3'
  // The portal link on the status page (shared/telemetry.py workbook_url).
  MONITORING_WORKBOOK_URL: workbookUrl
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true // Linux
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': serviceName })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Key Vault references resolve with the user-assigned identity (the default would be a system identity).
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${hostStorage.properties.primaryEndpoints.blob}${deploymentStorageContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }

  // Replaces all app settings on every provision: change settings through main.bicep parameters.
  resource appSettings 'config' = {
    name: 'appsettings'
    properties: union(boboSettings, requiredSettings, platformSettings)
  }
}

// No publishing user name and password: azd deploys to Flex Consumption with an Entra ID token, and the
// portal and Kudu sign in with Entra ID too. Basic authentication stays off for both endpoints.
resource scmBasicPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

resource ftpBasicPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

output name string = functionApp.name
output id string = functionApp.id
output defaultHostName string = functionApp.properties.defaultHostName
