// Cosmos DB for NoSQL, serverless, Entra ID only (local auth off), with the
// database and its containers, and the control plane's data-plane role.
param location string
param accountName string
param databaseName string
param controlPrincipalId string

resource account 'Microsoft.DocumentDB/databaseAccounts@2024-11-15' = {
  name: accountName
  location: location
  kind: 'GlobalDocumentDB'
  properties: {
    databaseAccountOfferType: 'Standard'
    disableLocalAuth: true
    disableKeyBasedMetadataWriteAccess: true
    minimalTlsVersion: 'Tls12'
    consistencyPolicy: { defaultConsistencyLevel: 'Session' }
    locations: [
      { locationName: location, failoverPriority: 0, isZoneRedundant: false }
    ]
    capabilities: [ { name: 'EnableServerless' } ]
  }
}

resource db 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2024-11-15' = {
  parent: account
  name: databaseName
  properties: { resource: { id: databaseName } }
}

// As handlers/store/cosmos.rs `container_definitions()`: environments,
// identities, audit and personal secrets (sealed) by owner; users (+ email and identity indexes),
// sessions and small documents by id. Environment names are unique per owner.
var containers = [
  { name: 'environments', key: '/userId', ttl: false, unique: [ '/name' ] }
  { name: 'users', key: '/id', ttl: false, unique: [] }
  { name: 'sessions', key: '/id', ttl: true, unique: [] }
  { name: 'documents', key: '/id', ttl: true, unique: [] }
  { name: 'identities', key: '/userId', ttl: false, unique: [] }
  { name: 'audit', key: '/userId', ttl: false, unique: [] }
  { name: 'secrets', key: '/userId', ttl: false, unique: [] }
]

resource cs 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = [for c in containers: {
  parent: db
  name: c.name
  properties: {
    resource: union({
      id: c.name
      partitionKey: { paths: [ c.key ], kind: 'Hash', version: 2 }
    }, c.ttl ? { defaultTtl: -1 } : {}, empty(c.unique) ? {} : {
      uniqueKeyPolicy: { uniqueKeys: [ { paths: c.unique } ] }
    })
  }
}]

// Cosmos DB Built-in Data Contributor, on the account.
resource dataContributor 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-11-15' = {
  parent: account
  name: guid(account.id, controlPrincipalId, 'data-contributor')
  properties: {
    principalId: controlPrincipalId
    roleDefinitionId: '${account.id}/sqlRoleDefinitions/00000000-0000-0000-0000-000000000002'
    scope: account.id
  }
}

output endpoint string = account.properties.documentEndpoint
