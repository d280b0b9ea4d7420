// The control plane's custom role (a subscription-level resource, assignable
// only in Dev8's resource group): container groups and file shares, and the
// account key ACI mounts shares with. Nothing else.
targetScope = 'subscription'
param resourceGroupId string

resource role 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroupId, 'dev8-environments-operator')
  properties: {
    roleName: 'Dev8 environments operator (${last(split(resourceGroupId, '/'))})'
    description: 'Create, start, stop and delete Dev8 container groups and their Azure Files shares.'
    type: 'CustomRole'
    assignableScopes: [ resourceGroupId ]
    permissions: [
      {
        actions: [
          'Microsoft.ContainerInstance/containerGroups/read'
          'Microsoft.ContainerInstance/containerGroups/write'
          'Microsoft.ContainerInstance/containerGroups/delete'
          'Microsoft.ContainerInstance/containerGroups/start/action'
          'Microsoft.ContainerInstance/containerGroups/stop/action'
          'Microsoft.Storage/storageAccounts/fileServices/shares/read'
          'Microsoft.Storage/storageAccounts/fileServices/shares/write'
          'Microsoft.Storage/storageAccounts/fileServices/shares/delete'
          'Microsoft.Storage/storageAccounts/listkeys/action'
        ]
        notActions: []
      }
    ]
  }
}

output id string = role.id
