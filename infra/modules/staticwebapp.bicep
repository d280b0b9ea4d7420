// The dashboard: a Static Web App (Standard: needed for a linked backend).
// The link to the Function App is made in main.bicep, after the app exists
// (the app's DEV8_PUBLIC_URL needs this site's host name first).
param location string
param prefix string

resource swa 'Microsoft.Web/staticSites@2023-12-01' = {
  name: 'stapp-${prefix}'
  location: location
  sku: { name: 'Standard', tier: 'Standard' }
  properties: {
    stagingEnvironmentPolicy: 'Disabled'
    allowConfigFileUpdates: true
  }
}

output defaultHostname string = swa.properties.defaultHostname
output name string = swa.name
