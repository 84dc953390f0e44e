// Inference on Azure Container Apps with a serverless GPU, AI Toolkit compatible.
// Parameter names, default name prefixes and outputs match AI Toolkit's template so a
// project moves between VS Code and aitk. Differences (see README): serverless GPU with
// scale to zero, an API key held as a container-app secret, commands joined with ' && '.
// inference.json beside this file is what aitk deploys; keep the two in step
// (tests/test_infra.py compares their parameters, resources and outputs).

@description('The commands to start the inference web API, run in order; the first failure stops the container.')
param defaultCommands array

@description('Maximum number of GPU replicas (the app scales to zero when idle).')
@minValue(1)
param maximumInstanceCount int

param location string = resourceGroup().location
param resourceSuffix string = substring(uniqueString(resourceGroup().id), 0, 5)
param storageAccountName string = 'aistorage${resourceSuffix}'
param fileShareName string = 'aifileshare${resourceSuffix}'
param acaEnvironmentName string = 'aienv${resourceSuffix}'
param acaEnvironmentStorageName string = 'aienvstorage${resourceSuffix}'
param acaAppName string = 'aiacaapp${resourceSuffix}'
param acaLogAnalyticsName string = 'ailog${resourceSuffix}'

@description('Serverless GPU workload profile type.')
@allowed(['Consumption-GPU-NC24-A100', 'Consumption-GPU-NC8as-T4'])
param gpuProfileType string = 'Consumption-GPU-NC24-A100'
param containerImage string = 'docker.io/pytorch/pytorch:2.13.0-cuda12.6-cudnn9-runtime'
param containerCpu int = 24
param containerMemory string = '220Gi'
param modelPath string = '/mount/model-cache/microsoft/Phi-3-mini-4k-instruct'
param adapterPath string = '/mount/models/qlora/qlora/gpu_model/adapter'
param adapterName string = 'adapter'

@description('Several LoRA adapters on the one base, each NAME=PATH with PATH on the share; each answers as model NAME. Empty: the single adapterPath, answering as adapterName.')
param adapters array = []

@description('Serve the base model too (under its folder name): the adapters stay unmerged.')
param serveBase bool = false

@description('The aitk project that provisions these resources (aitk sets it): the value of their aitk-project tag, so that one project\'s teardown never takes another\'s resources in a shared group.')
param aitkProject string = ''

@secure()
@description('Bearer key clients must send; stored as the container-app secret inference-api-key.')
param inferenceApiKey string

var defaultCommand = join(defaultCommands, ' && ')
var tags = { 'aitk-project': aitkProject }

resource storageAccount 'Microsoft.Storage/storageAccounts@2023-01-01' = {
  name: storageAccountName
  location: location
  tags: tags
  sku: { name: 'Standard_LRS' }
  kind: 'StorageV2'
  // Hardened, and still usable by AI Toolkit's fine-tuning on the same account:
  // TLS 1.2 and HTTPS (SMB 3 with encryption) only, no anonymous blob access, no
  // cross-tenant replication. Shared-key access stays on: the Container Apps Azure Files
  // mount authenticates with the account key, and so does `aitk deploy` (listKeys).
  // Public network access stays on: the Consumption environment (no VNet) and the
  // developer's machine reach the share over its public endpoint; every request is
  // authorised by the key. Infrastructure encryption can only be chosen when an account
  // is created, so it is not set here (an existing account would fail to update).
  properties: {
    largeFileSharesState: 'Enabled'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    allowSharedKeyAccess: true
    defaultToOAuthAuthentication: false
    publicNetworkAccess: 'Enabled'
  }
}

resource fileService 'Microsoft.Storage/storageAccounts/fileServices@2023-01-01' = {
  parent: storageAccount
  name: 'default'
  properties: {
    protocolSettings: { smb: {} }
    cors: { corsRules: [] }
    shareDeleteRetentionPolicy: { enabled: true, days: 7 }
  }
}

resource fileShare 'Microsoft.Storage/storageAccounts/fileServices/shares@2023-01-01' = {
  parent: fileService
  name: fileShareName
  properties: { shareQuota: 1024 }
}

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2022-10-01' = {
  name: acaLogAnalyticsName
  location: location
  tags: tags
  properties: { sku: { name: 'PerGB2018' } }
}

resource environment 'Microsoft.App/managedEnvironments@2023-11-02-preview' = {
  name: acaEnvironmentName
  location: location
  tags: tags
  properties: {
    zoneRedundant: false
    appLogsConfiguration: {
      destination: 'log-analytics'
      logAnalyticsConfiguration: {
        customerId: logAnalytics.properties.customerId
        sharedKey: logAnalytics.listKeys().primarySharedKey
      }
    }
    workloadProfiles: [
      { workloadProfileType: 'Consumption', name: 'Consumption' }
      { workloadProfileType: gpuProfileType, name: 'GPU' }
    ]
  }
}

resource environmentStorage 'Microsoft.App/managedEnvironments/storages@2023-11-02-preview' = {
  parent: environment
  name: acaEnvironmentStorageName
  properties: {
    azureFile: {
      accountName: storageAccountName
      accountKey: storageAccount.listKeys().keys[0].value
      shareName: fileShareName
      accessMode: 'ReadWrite'
    }
  }
  dependsOn: [ fileShare ]
}

resource acaApp 'Microsoft.App/containerApps@2023-11-02-preview' = {
  name: acaAppName
  location: location
  tags: tags
  properties: {
    environmentId: environment.id
    workloadProfileName: 'GPU'
    configuration: {
      activeRevisionsMode: 'Single'
      secrets: [ { name: 'inference-api-key', value: inferenceApiKey } ]
      ingress: {
        external: true
        allowInsecure: false
        targetPort: 7860
        transport: 'Auto'
        traffic: [ { latestRevision: true, weight: 100 } ]
      }
    }
    template: {
      containers: [
        {
          name: acaAppName
          image: containerImage
          command: [ '/bin/bash', '-c', defaultCommand ]
          resources: { cpu: containerCpu, memory: containerMemory }
          env: [
            { name: 'AITK_MODEL_PATH', value: modelPath }
            // The server reads a single PATH or a comma-separated NAME=PATH list here.
            { name: 'AITK_ADAPTER_PATH', value: empty(adapters) ? adapterPath : join(adapters, ',') }
            { name: 'AITK_ADAPTER_NAME', value: empty(adapters) ? adapterName : '' }
            { name: 'AITK_SERVE_BASE', value: string(serveBase) }
            { name: 'AITK_PORT', value: '7860' }
            // The app runs on the GPU profile: the server refuses (one sentence) when torch sees no CUDA device.
            { name: 'AITK_REQUIRE_GPU', value: 'true' }
            // Part of the key of the deps step's cached environment (inference_server/deps.py).
            { name: 'AITK_CONTAINER_IMAGE', value: containerImage }
            { name: 'HF_HOME', value: '/mount/.cache/huggingface' }
            { name: 'PIP_CACHE_DIR', value: '/mount/.cache/pip' }
            { name: 'INFERENCE_API_KEY', secretRef: 'inference-api-key' }
          ]
          probes: [
            { type: 'Startup', httpGet: { path: '/health', port: 7860 }, initialDelaySeconds: 10, periodSeconds: 20, failureThreshold: 30 }
            { type: 'Liveness', httpGet: { path: '/health', port: 7860 }, periodSeconds: 30, failureThreshold: 3 }
          ]
          volumeMounts: [ { volumeName: '${fileShareName}volume', mountPath: '/mount' } ]
        }
      ]
      volumes: [ { name: '${fileShareName}volume', storageType: 'AzureFile', storageName: environmentStorage.name } ]
      scale: { minReplicas: 0, maxReplicas: maximumInstanceCount }
    }
  }
}

output SUBSCRIPTION_ID string = subscription().subscriptionId
output RESOURCE_GROUP_NAME string = resourceGroup().name
output STORAGE_ACCOUNT_NAME string = storageAccountName
output FILE_SHARE_NAME string = fileShareName
output ACA_APP_NAME string = acaAppName
output ACA_APP_ENDPOINT string = acaApp.properties.configuration.ingress.fqdn
