// Key Vault for the AtHoc client secret and password. RBAC authorization: the app's identity gets
// Key Vault Secrets User (read secret values) and nothing else (rbac.bicep).
@description('Key Vault name (3-24 characters).')
@minLength(3)
@maxLength(24)
param name string

@description('Region.')
param location string

@description('Tags for the resources.')
param tags object = {}

@description('Purge protection: deleted secrets and the vault cannot be purged before the retention period ends.')
param enablePurgeProtection bool = false

@description('Days a deleted vault or secret can be recovered.')
@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int = 7

@description('Name of the secret holding the AtHoc API client secret.')
param athocClientSecretName string

@secure()
@description('AtHoc API client secret. Empty: the secret is not touched (set or rotate it with az keyvault secret set).')
param athocClientSecret string = ''

@description('Name of the secret holding the AtHoc service account password.')
param athocPasswordName string

@secure()
@description('AtHoc service account password. Empty: the secret is not touched.')
param athocPassword string = ''

resource vault 'Microsoft.KeyVault/vaults@2024-11-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    // The API refuses an explicit false once set, so send null rather than false.
    enablePurgeProtection: enablePurgeProtection ? true : null
    publicNetworkAccess: 'Enabled' // Flex Consumption without a virtual network resolves references over the public endpoint
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

// Written only when a value is given, so a later `azd provision` without the value never overwrites a
// secret rotated with az keyvault secret set.
resource clientSecret 'Microsoft.KeyVault/vaults/secrets@2024-11-01' = if (!empty(athocClientSecret)) {
  parent: vault
  name: athocClientSecretName
  properties: {
    value: athocClientSecret
    contentType: 'text/plain'
  }
}

resource password 'Microsoft.KeyVault/vaults/secrets@2024-11-01' = if (!empty(athocPassword)) {
  parent: vault
  name: athocPasswordName
  properties: {
    value: athocPassword
    contentType: 'text/plain'
  }
}

output name string = vault.name
output id string = vault.id
output vaultUri string = vault.properties.vaultUri
