// Two storage accounts:
// * the host's (Functions runtime state, the jobs queue and its poison queue,
//   the deployment package), identity-only: no shared keys;
// * the workspace account holding one Azure Files share per environment
//   (its home in share mode, its TLS certificates in snapshot mode) and one
//   Blob container per snapshot-mode environment (its snapshots). ACI
//   mounts Azure Files only with the account key, and the control plane
//   signs the agents' container SAS with it, so shared-key access stays on
//   there (no extra role: the control plane's `listKeys` is already in the
//   matrix); the key is read at run time through listKeys and never stored.
param location string
param hostAccountName string
param workspaceAccountName string
param queueName string

resource host 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: hostAccountName
  location: location
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    supportsHttpsTrafficOnly: true
    defaultToOAuthAuthentication: true
  }
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: host
  name: 'default'
}

resource jobs 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queues
  name: queueName
}

resource poison 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queues
  name: '${queueName}-poison'
}

resource blobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: host
  name: 'default'
}

resource deployments 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobs
  name: 'deployments'
  properties: { publicAccess: 'None' }
}

resource workspace 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: workspaceAccountName
  location: location
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: true
    supportsHttpsTrafficOnly: true
    largeFileSharesState: 'Enabled'
  }
}

resource files 'Microsoft.Storage/storageAccounts/fileServices@2023-05-01' = {
  parent: workspace
  name: 'default'
  properties: {
    shareDeleteRetentionPolicy: { enabled: true, days: 7 }
  }
}

output hostAccountName string = host.name
output hostAccountId string = host.id
output queueServiceUri string = host.properties.primaryEndpoints.queue
output blobServiceUri string = host.properties.primaryEndpoints.blob
output workspaceAccountName string = workspace.name
output workspaceAccountId string = workspace.id
