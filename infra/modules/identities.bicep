// The two user-assigned identities: the control plane's (the Function App)
// and the environments' pull-only identity (attached to every container group).
param location string
param prefix string

resource control 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${prefix}-control'
  location: location
}

resource pull 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${prefix}-env-pull'
  location: location
}

output controlId string = control.id
output controlClientId string = control.properties.clientId
output controlPrincipalId string = control.properties.principalId
output pullId string = pull.id
output pullPrincipalId string = pull.properties.principalId
output pullName string = pull.name
