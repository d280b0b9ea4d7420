// Role assignments of the control plane's identity (least privilege):
// * the custom environments-operator role on the resource group;
// * Managed Identity Operator on the environments' pull identity only (to
//   attach it to container groups; it cannot attach any other identity);
// * Storage Queue Data Contributor, Storage Blob Data Owner and Storage Table
//   Data Contributor on the host's storage account (the jobs queue; the
//   Functions host's own state; the host's diagnostic events, which it writes
//   to tables in the AzureWebJobsStorage account).
param controlPrincipalId string
param operatorRoleId string
param pullIdentityName string
param hostAccountName string

resource pull 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: pullIdentityName
}

resource host 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostAccountName
}

resource operator 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, controlPrincipalId, operatorRoleId)
  properties: {
    principalId: controlPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: operatorRoleId
  }
}

var managedIdentityOperator = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'f1a07417-d97a-45cb-824c-7a7467783830')

resource assignPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: pull
  name: guid(pull.id, controlPrincipalId, managedIdentityOperator)
  properties: {
    principalId: controlPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: managedIdentityOperator
  }
}

var queueDataContributor = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '974c5e8b-45b9-4653-ba55-5f855dd0fb88')
var blobDataOwner = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b')
var tableDataContributor = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3')

resource queues 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: host
  name: guid(host.id, controlPrincipalId, queueDataContributor)
  properties: {
    principalId: controlPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: queueDataContributor
  }
}

resource blobs 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: host
  name: guid(host.id, controlPrincipalId, blobDataOwner)
  properties: {
    principalId: controlPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: blobDataOwner
  }
}

resource tables 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: host
  name: guid(host.id, controlPrincipalId, tableDataContributor)
  properties: {
    principalId: controlPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: tableDataContributor
  }
}
