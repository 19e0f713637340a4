// Event Grid system topic for the BOBO data storage account. Its one subscription (BlobCreated in the
// incoming container -> the ingest_csv blob extension webhook) is written by infra/hooks/postdeploy.* and
// postprovision.*, because the webhook URL carries a key that exists only after the code is deployed.
@description('System topic name.')
param name string

@description('Region of the storage account.')
param location string

@description('Tags for the resource.')
param tags object = {}

@description('Storage account whose blob events the topic publishes.')
param storageAccountName string

resource storageAccount 'Microsoft.Storage/storageAccounts@2024-01-01' existing = {
  name: storageAccountName
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: name
  location: location
  tags: tags
  properties: {
    source: storageAccount.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

output name string = systemTopic.name
output id string = systemTopic.id
