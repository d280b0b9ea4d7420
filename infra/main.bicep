// Dev8 on Azure: the whole platform in one resource group.
//   az deployment group create -g <rg> -f infra/main.bicep -p infra/main.parameters.json \
//     -p signingKeys=... secretsKey=... vaultSuffix=...
// Preflight: the subscription must have its resource providers registered
// (`az provider register`, docs/deploy.md step 2), Microsoft.ContainerInstance
// above all: nothing here creates a container group, so a missing
// registration would show only at the first environment start
// (MissingSubscriptionRegistration). docs/deploy.md is the step-by-step path.
// Unvalidated here: no Bicep CLI on the machine this was written on.
targetScope = 'resourceGroup'

@description('Short lower-case name used in every resource name (3-11 letters/digits).')
@minLength(3)
@maxLength(11)
param prefix string = 'dev8'

@description('Region of everything except the Static Web App.')
param location string = resourceGroup().location

@description('Region of the Static Web App (SWA is offered in a few regions only).')
param staticWebAppLocation string = 'westeurope'

@description('Public origin of the dashboard + API; default: the Static Web App\'s own host name.')
param publicUrl string = ''

@description('URL of the Functions package zip in the host storage\'s `deployments` container (see README).')
param packageUrl string = ''

@description('Tag of the environment images in the registry (= DEV8_IMAGE_TAG).')
param imageTag string = '0.1.0'

@description('Part of the Key Vault\'s name, chosen once per resource group (3-8 lower-case letters or digits, e.g. `openssl rand -hex 3`) and passed again on every redeployment of that group. Vault names are global and a deleted vault keeps its name while purge protection holds it, so a group created again after a teardown needs a new value.')
@minLength(3)
@maxLength(8)
param vaultSuffix string

@description('DEV8_SIGNING_KEYS: `kid:base64url-seed,...` (README says how to make one).')
@secure()
param signingKeys string

@description('DEV8_SECRETS_KEY: 32 random bytes, base64 (`openssl rand -base64 32`); seals the users\' personal secrets at rest. Stored in Key Vault as dev8-secrets-key. Pass the same value on every deployment: a different one makes every stored secret unreadable.')
@secure()
param secretsKey string

@description('DEV8_SETUP_CODE: the first account\'s sign-up must give it. Generated on each deployment (newGuid) into Key Vault as dev8-setup-code; docs/deploy.md says how to read it.')
@secure()
param setupCode string = newGuid()

@secure()
param githubClientSecret string = ''
param githubClientId string = ''
param githubUrl string = 'https://github.com'
param githubApiUrl string = 'https://api.github.com'

@secure()
param oidcClientSecret string = ''
param oidcIssuer string = ''
param oidcClientId string = ''
param oidcName string = ''

@description('DEV8_SMTP_*: the mail server for the link that confirms a password sign-up under an email-domain allowlist. Without a host, password sign-up under an allowlist is refused (provider sign-in only).')
param smtpHost string = ''
param smtpPort int = 587
@allowed([ 'starttls', 'tls', 'none' ])
param smtpTls string = 'starttls'
param smtpUser string = ''
param smtpFrom string = ''
@description('DEV8_SMTP_PASSWORD: stored in Key Vault as dev8-smtp-password.')
@secure()
param smtpPassword string = ''

@allowed([ 'open', 'first', 'closed' ])
param signup string = 'first'
param signupDomains string = ''
param maxEnvironmentsPerUser int = 10
param maxRunningPerUser int = 5
param maxRunningTotal int = 50
@minValue(5)
@maxValue(480)
param idleTimeoutMinutes int = 30
param sweepSchedule string = '0 */5 * * * *'
@description('X-Forwarded-For hops to trust: the Static Web App\'s proxy in front of the Function App.')
param trustedProxyHops int = 1
param reconcileIntervalMs int = 5000
@description('A container group\'s local disk (GB): environments whose storage + image + 2 GB fit get snapshot mode (home on local disk, snapshots in Blob); 0 turns snapshot mode off. About 50 GB per Microsoft Q&A answers; not documented (docs/aci.md).')
@minValue(0)
param aciLocalDiskGb int = 50
@description('Snapshot mode: a snapshot of a running environment\'s home this often (minutes); a crash loses at most this much work.')
@minValue(1)
@maxValue(1440)
param snapshotIntervalMinutes int = 10

// Where the day-one alerts (infra/modules/alerts.bicep) are mailed; empty: portal only.
param alertEmail string = ''

var queueName = 'env-jobs'
var cosmosDatabase = 'dev8'
var suffix = uniqueString(resourceGroup().id)
var compact = toLower(replace(prefix, '-', ''))

module identities 'modules/identities.bicep' = {
  name: 'identities'
  params: { location: location, prefix: prefix }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: { location: location, prefix: prefix }
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  params: {
    location: location
    prefix: prefix
    appInsightsId: monitoring.outputs.insightsId
    alertEmail: alertEmail
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    location: location
    hostAccountName: take('st${compact}host${suffix}', 24)
    workspaceAccountName: take('st${compact}work${suffix}', 24)
    queueName: queueName
  }
}

module cosmos 'modules/cosmos.bicep' = {
  name: 'cosmos'
  params: {
    location: location
    accountName: 'cosmos-${prefix}-${suffix}'
    databaseName: cosmosDatabase
    controlPrincipalId: identities.outputs.controlPrincipalId
  }
}

module registry 'modules/registry.bicep' = {
  name: 'registry'
  params: {
    location: location
    registryName: take('cr${compact}${suffix}', 50)
    pullPrincipalId: identities.outputs.pullPrincipalId
  }
}

module vault 'modules/keyvault.bicep' = {
  name: 'vault'
  params: {
    location: location
    vaultName: take('kv${compact}${toLower(vaultSuffix)}${suffix}', 24)
    controlPrincipalId: identities.outputs.controlPrincipalId
    signingKeys: signingKeys
    secretsKey: secretsKey
    setupCode: setupCode
    githubClientSecret: githubClientSecret
    oidcClientSecret: oidcClientSecret
    smtpPassword: smtpPassword
  }
}

module roleDefinition 'modules/roledef.bicep' = {
  name: 'roledef'
  scope: subscription()
  params: { resourceGroupId: resourceGroup().id }
}

module roles 'modules/roles.bicep' = {
  name: 'roles'
  params: {
    controlPrincipalId: identities.outputs.controlPrincipalId
    operatorRoleId: roleDefinition.outputs.id
    pullIdentityName: identities.outputs.pullName
    hostAccountName: storage.outputs.hostAccountName
  }
}

module swa 'modules/staticwebapp.bicep' = {
  name: 'staticwebapp'
  params: { location: staticWebAppLocation, prefix: prefix }
}

module app 'modules/functionapp.bicep' = {
  name: 'functionapp'
  dependsOn: [ roles, vault ]
  params: {
    location: location
    prefix: prefix
    controlIdentityId: identities.outputs.controlId
    controlClientId: identities.outputs.controlClientId
    appInsightsConnectionString: monitoring.outputs.connectionString
    packageUrl: empty(packageUrl) ? '${storage.outputs.blobServiceUri}deployments/dev8-functions.zip' : packageUrl
    hostAccountName: storage.outputs.hostAccountName
    queueServiceUri: storage.outputs.queueServiceUri
    queueName: queueName
    publicUrl: empty(publicUrl) ? 'https://${swa.outputs.defaultHostname}' : publicUrl
    cosmosEndpoint: cosmos.outputs.endpoint
    cosmosDatabase: cosmosDatabase
    aciRegion: location
    workspaceAccountName: storage.outputs.workspaceAccountName
    imageRegistry: registry.outputs.loginServer
    imageTag: imageTag
    pullIdentityId: identities.outputs.pullId
    vaultName: vault.outputs.name
    signup: signup
    signupDomains: signupDomains
    maxEnvironmentsPerUser: maxEnvironmentsPerUser
    maxRunningPerUser: maxRunningPerUser
    maxRunningTotal: maxRunningTotal
    idleTimeoutMinutes: idleTimeoutMinutes
    sweepSchedule: sweepSchedule
    trustedProxyHops: trustedProxyHops
    reconcileIntervalMs: reconcileIntervalMs
    aciLocalDiskGb: aciLocalDiskGb
    snapshotIntervalMinutes: snapshotIntervalMinutes
    githubClientId: githubClientId
    githubUrl: githubUrl
    githubApiUrl: githubApiUrl
    oidcIssuer: oidcIssuer
    oidcClientId: oidcClientId
    oidcName: oidcName
    smtpHost: smtpHost
    smtpPort: smtpPort
    smtpTls: smtpTls
    smtpUser: smtpUser
    smtpFrom: smtpFrom
    smtpPasswordSet: !empty(smtpPassword)
  }
}

// The dashboard's /api goes to the Function App.
resource site 'Microsoft.Web/staticSites@2023-12-01' existing = {
  name: 'stapp-${prefix}'
}

resource backend 'Microsoft.Web/staticSites/linkedBackends@2023-12-01' = {
  parent: site
  name: 'control-plane'
  dependsOn: [ swa ]
  properties: {
    backendResourceId: app.outputs.id
    region: location
  }
}

output functionAppName string = app.outputs.name
output staticWebAppName string = swa.outputs.name
output dashboardUrl string = empty(publicUrl) ? 'https://${swa.outputs.defaultHostname}' : publicUrl
output registryLoginServer string = registry.outputs.loginServer
output hostStorageAccount string = storage.outputs.hostAccountName
output workspaceStorageAccount string = storage.outputs.workspaceAccountName
output keyVaultName string = vault.outputs.name
