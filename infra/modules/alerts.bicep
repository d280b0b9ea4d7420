// The alert rules an operator wants on day one, as log search alerts over
// the Application Insights resource the control plane exports to (metrics
// land in `customMetrics`, one row per export with `valueSum`; see
// handlers/metrics/). Names and labels are those of `dev8::metrics`;
// tests/it/infra_alerts.rs checks that every metric named here exists.
param location string
param prefix string
// The Application Insights component (its resource id) the queries run on.
param appInsightsId string
// Where alerts are mailed; empty: alerts fire in the portal only.
param alertEmail string = ''

var window = 'PT15M'
var every = 'PT5M'

resource mail 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: 'ag-${prefix}-ops'
  location: 'global'
  properties: {
    groupShortName: take('${prefix}ops', 12)
    enabled: true
    emailReceivers: [
      { name: 'operator', emailAddress: alertEmail, useCommonAlertSchema: true }
    ]
  }
}

var actions = empty(alertEmail) ? [] : [mail.id]

// Each rule: a KQL query returning one row with `measure`, fired when it
// passes `threshold` in the last 15 minutes.
var rules = [
  {
    name: 'poison-queue'
    description: 'A job failed on its last allowed delivery: its message is in the poison queue (env-jobs-poison) and its environment shows error.'
    severity: 1
    threshold: 0
    query: 'customMetrics | where name == "dev8_jobs_total" and tostring(customDimensions.outcome) == "poisoned" | summarize measure = sum(valueSum)'
  }
  {
    name: 'reconcile-failures'
    description: 'More than 20% of reconcile deliveries failed (retried or poisoned) over at least 5 deliveries.'
    severity: 2
    threshold: json('0.2')
    query: 'customMetrics | where name == "dev8_jobs_total" | extend outcome = tostring(customDimensions.outcome) | summarize failed = sumif(valueSum, outcome != "done"), total = sum(valueSum) | where total >= 5 | project measure = failed / total'
  }
  {
    name: 'environments-in-error'
    description: 'At least one environment is in status error (the sweep reports the count every run).'
    severity: 2
    threshold: 0
    query: 'customMetrics | where name == "dev8_environments" and tostring(customDimensions.status) == "error" | summarize arg_max(timestamp, value) | project measure = value'
  }
  {
    name: 'http-5xx'
    description: 'More than 5% of API requests answered 5xx over at least 20 requests.'
    severity: 2
    threshold: json('0.05')
    query: 'customMetrics | where name == "dev8_http_requests_total" | extend code = toint(tostring(customDimensions.code)) | summarize failed = sumif(valueSum, code >= 500), total = sum(valueSum) | where total >= 20 | project measure = failed / total'
  }
]

resource alerts 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = [for rule in rules: {
  name: 'alert-${prefix}-${rule.name}'
  location: location
  properties: {
    displayName: 'Dev8: ${rule.name}'
    description: rule.description
    severity: rule.severity
    enabled: true
    scopes: [appInsightsId]
    evaluationFrequency: every
    windowSize: window
    criteria: {
      allOf: [
        {
          query: rule.query
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'measure'
          operator: 'GreaterThan'
          threshold: rule.threshold
          failingPeriods: { numberOfEvaluationPeriods: 1, minFailingPeriodsToAlert: 1 }
        }
      ]
    }
    autoMitigate: true
    actions: { actionGroups: actions }
  }
}]

output ruleNames array = [for (rule, i) in rules: alerts[i].name]
