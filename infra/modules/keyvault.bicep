// Key Vault (RBAC) for the control plane's secrets, referenced from app
// settings as @Microsoft.KeyVault(...). Secrets are written only when given.
param location string
param vaultName string
param controlPrincipalId string
@secure()
param signingKeys string
@secure()
param secretsKey string
@secure()
param setupCode string
@secure()
param githubClientSecret string
@secure()
param oidcClientSecret string
@secure()
param smtpPassword string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: vaultName
  location: location
  properties: {
    tenantId: subscription().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 30
    enablePurgeProtection: true
  }
}

resource signing 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(signingKeys)) {
  parent: vault
  name: 'dev8-signing-keys'
  properties: { value: signingKeys }
}

// Seals personal secrets at rest (DEV8_SECRETS_KEY); never in the database.
resource secretsKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(secretsKey)) {
  parent: vault
  name: 'dev8-secrets-key'
  properties: { value: secretsKey }
}

resource setup 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(setupCode)) {
  parent: vault
  name: 'dev8-setup-code'
  properties: { value: setupCode }
}

resource github 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(githubClientSecret)) {
  parent: vault
  name: 'dev8-github-client-secret'
  properties: { value: githubClientSecret }
}

resource oidc 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(oidcClientSecret)) {
  parent: vault
  name: 'dev8-oidc-client-secret'
  properties: { value: oidcClientSecret }
}

resource smtp 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(smtpPassword)) {
  parent: vault
  name: 'dev8-smtp-password'
  properties: { value: smtpPassword }
}

// Key Vault Secrets User: read secret values, nothing else.
var secretsUser = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '4633458b-17de-408a-b874-0445c86b69e6')

resource readSecrets 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: vault
  name: guid(vault.id, controlPrincipalId, secretsUser)
  properties: {
    principalId: controlPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: secretsUser
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
