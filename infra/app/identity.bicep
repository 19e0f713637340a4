// The app's user-assigned managed identity: storage, Key Vault references and App Insights all use it.
@description('Name of the user-assigned managed identity.')
param name string

@description('Region.')
param location string

@description('Tags for the resource.')
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
