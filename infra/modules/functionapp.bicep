// The control plane: one Linux Function App on an Elastic Premium plan running
// the `handler` binary as a custom handler (host.json -> `handler functions`).
// Every setting the binary reads is set here (tests/infra_settings.rs checks).
param location string
param prefix string
param controlIdentityId string
param controlClientId string
param appInsightsConnectionString string
param packageUrl string
param hostAccountName string
param queueServiceUri string
param queueName string
param publicUrl string
param cosmosEndpoint string
param cosmosDatabase string
param aciRegion string
param workspaceAccountName string
param imageRegistry string
param imageTag string
param pullIdentityId string
param vaultName string
param signup string
param signupDomains string
param maxEnvironmentsPerUser int
param maxRunningPerUser int
param maxRunningTotal int
param idleTimeoutMinutes int
param sweepSchedule string
param trustedProxyHops int
param reconcileIntervalMs int
param aciLocalDiskGb int
param snapshotIntervalMinutes int
param githubClientId string
param githubUrl string
param githubApiUrl string
param oidcIssuer string
param oidcClientId string
param oidcName string
param smtpHost string
param smtpPort int
param smtpTls string
param smtpUser string
param smtpFrom string
// Whether a password was given (it is in Key Vault as dev8-smtp-password).
param smtpPasswordSet bool

resource plan 'Microsoft.Web/serverfarms@2023-12-01' = {
  name: 'plan-${prefix}'
  location: location
  kind: 'elastic'
  sku: { name: 'EP1', tier: 'ElasticPremium' }
  properties: {
    reserved: true
    maximumElasticWorkerCount: 5
  }
}

func kvRef(vault string, secret string) string => '@Microsoft.KeyVault(VaultName=${vault};SecretName=${secret})'

var baseSettings = [
  // The Functions host.
  { name: 'FUNCTIONS_EXTENSION_VERSION', value: '~4' }
  { name: 'FUNCTIONS_WORKER_RUNTIME', value: 'custom' }
  { name: 'WEBSITE_RUN_FROM_PACKAGE', value: packageUrl }
  { name: 'WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID', value: controlIdentityId }
  { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: appInsightsConnectionString }
  { name: 'AzureWebJobsStorage__accountName', value: hostAccountName }
  { name: 'AzureWebJobsStorage__queueServiceUri', value: queueServiceUri }
  { name: 'AzureWebJobsStorage__credential', value: 'managedidentity' }
  { name: 'AzureWebJobsStorage__clientId', value: controlClientId }
  // The control plane's identity for ARM, Cosmos DB and Key Vault.
  { name: 'AZURE_CLIENT_ID', value: controlClientId }
  { name: 'DEV8_PUBLIC_URL', value: publicUrl }
  // State and jobs.
  { name: 'DEV8_STORE', value: 'cosmos' }
  { name: 'COSMOS_ENDPOINT', value: cosmosEndpoint }
  { name: 'COSMOS_DATABASE', value: cosmosDatabase }
  { name: 'DEV8_COSMOS_CREATE_CONTAINERS', value: 'false' }
  { name: 'DEV8_QUEUE_BACKEND', value: 'storage' }
  { name: 'DEV8_QUEUE_NAME', value: queueName }
  // Environments on ACI.
  { name: 'DEV8_COMPUTE', value: 'aci' }
  { name: 'AZURE_SUBSCRIPTION_ID', value: subscription().subscriptionId }
  { name: 'AZURE_RESOURCE_GROUP', value: resourceGroup().name }
  { name: 'AZURE_REGION', value: aciRegion }
  { name: 'DEV8_WORKSPACE_STORAGE_ACCOUNT', value: workspaceAccountName }
  { name: 'DEV8_IMAGE_REGISTRY', value: imageRegistry }
  { name: 'DEV8_IMAGE_TAG', value: imageTag }
  { name: 'DEV8_ACR_PULL_IDENTITY', value: pullIdentityId }
  { name: 'DEV8_ARM_ENDPOINT', value: environment().resourceManager }
  // Snapshot mode (docs/aci.md): which environments get it, how often it snapshots.
  { name: 'DEV8_ACI_LOCAL_DISK_GB', value: string(aciLocalDiskGb) }
  { name: 'DEV8_SNAPSHOT_INTERVAL_MINUTES', value: string(snapshotIntervalMinutes) }
  // Tokens and policy.
  { name: 'DEV8_SIGNING_KEYS', value: kvRef(vaultName, 'dev8-signing-keys') }
  { name: 'DEV8_SECRETS_KEY', value: kvRef(vaultName, 'dev8-secrets-key') }
  { name: 'DEV8_SETUP_CODE', value: kvRef(vaultName, 'dev8-setup-code') }
  { name: 'DEV8_SIGNUP', value: signup }
  { name: 'DEV8_MAX_ENVIRONMENTS_PER_USER', value: string(maxEnvironmentsPerUser) }
  { name: 'DEV8_MAX_RUNNING_PER_USER', value: string(maxRunningPerUser) }
  { name: 'DEV8_MAX_RUNNING_TOTAL', value: string(maxRunningTotal) }
  { name: 'DEV8_IDLE_TIMEOUT_MINUTES', value: string(idleTimeoutMinutes) }
  { name: 'DEV8_SWEEP_SCHEDULE', value: sweepSchedule }
  { name: 'DEV8_TRUSTED_PROXY_HOPS', value: string(trustedProxyHops) }
  { name: 'DEV8_RECONCILE_INTERVAL_MS', value: string(reconcileIntervalMs) }
]

// Optional settings are present only when given (an empty value is not "unset").
var signupDomainSettings = empty(signupDomains) ? [] : [
  { name: 'DEV8_SIGNUP_DOMAINS', value: signupDomains }
]
var githubSettings = empty(githubClientId) ? [] : [
  { name: 'DEV8_GITHUB_CLIENT_ID', value: githubClientId }
  { name: 'DEV8_GITHUB_CLIENT_SECRET', value: kvRef(vaultName, 'dev8-github-client-secret') }
  { name: 'DEV8_GITHUB_URL', value: githubUrl }
  { name: 'DEV8_GITHUB_API_URL', value: githubApiUrl }
]
var oidcSettings = empty(oidcIssuer) ? [] : [
  { name: 'DEV8_OIDC_ISSUER', value: oidcIssuer }
  { name: 'DEV8_OIDC_CLIENT_ID', value: oidcClientId }
  { name: 'DEV8_OIDC_CLIENT_SECRET', value: kvRef(vaultName, 'dev8-oidc-client-secret') }
  { name: 'DEV8_OIDC_NAME', value: oidcName }
]

var smtpSettings = empty(smtpHost) ? [] : concat([
  { name: 'DEV8_SMTP_HOST', value: smtpHost }
  { name: 'DEV8_SMTP_PORT', value: string(smtpPort) }
  { name: 'DEV8_SMTP_TLS', value: smtpTls }
  { name: 'DEV8_SMTP_FROM', value: smtpFrom }
], empty(smtpUser) || !smtpPasswordSet ? [] : [
  { name: 'DEV8_SMTP_USER', value: smtpUser }
  { name: 'DEV8_SMTP_PASSWORD', value: kvRef(vaultName, 'dev8-smtp-password') }
])

// Function App names are global (`<name>.azurewebsites.net`): the suffix
// makes this one unique, and stable across redeployments of the same group.
resource site 'Microsoft.Web/sites@2023-12-01' = {
  name: 'func-${prefix}-${uniqueString(resourceGroup().id)}'
  location: location
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${controlIdentityId}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: controlIdentityId
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      minimumElasticInstanceCount: 1
      appSettings: concat(baseSettings, signupDomainSettings, githubSettings, oidcSettings, smtpSettings)
    }
  }
}

output id string = site.id
output name string = site.name
output defaultHostName string = site.properties.defaultHostName
