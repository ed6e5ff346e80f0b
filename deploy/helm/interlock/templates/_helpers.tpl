{{/*
Helpers of the interlock chart; every name starts with "interlock.".
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "interlock.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name of the release's resources. */}}
{{- define "interlock.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* chart-version, for the helm.sh/chart label. */}}
{{- define "interlock.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The labels that select the pods. */}}
{{- define "interlock.selectorLabels" -}}
app.kubernetes.io/name: {{ include "interlock.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The recommended labels of every resource. */}}
{{- define "interlock.labels" -}}
helm.sh/chart: {{ include "interlock.chart" . }}
{{ include "interlock.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: interlock
{{- end }}

{{/* The topics Job's name: at most 63 characters, as it is a label value of its pods. */}}
{{- define "interlock.topicsJobName" -}}
{{- printf "%s-topics" (include "interlock.fullname" . | trunc 56 | trimSuffix "-") }}
{{- end }}

{{/* The service image. */}}
{{- define "interlock.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* Whether the pods own partitions: processors and projections do, dispatch-only gateways do not. */}}
{{- define "interlock.ownsPartitions" -}}
{{- if or (has "process" .Values.app.roles) (has "project" .Values.app.roles) }}true{{ end }}
{{- end }}

{{/*
Checks of the values that values.schema.json cannot express; rendered (as
nothing) by every template, so `helm template` and `helm install` fail early.
*/}}
{{- define "interlock.validate" -}}
{{- if not .Values.kafka.brokers }}
{{- fail "kafka.brokers is required: the Kafka seed brokers, host:port each" }}
{{- end }}
{{- $partitions := int .Values.app.partitions }}
{{- if include "interlock.ownsPartitions" . }}
{{- if gt (int .Values.replicaCount) $partitions }}
{{- fail (printf "replicaCount %d is above app.partitions %d: each partition has one owner, so the pods beyond %d would own nothing" (int .Values.replicaCount) $partitions $partitions) }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.maxReplicas) $partitions) }}
{{- fail (printf "autoscaling.maxReplicas %d is above app.partitions %d" (int .Values.autoscaling.maxReplicas) $partitions) }}
{{- end }}
{{- if and .Values.keda.enabled (gt (int .Values.keda.maxReplicaCount) $partitions) }}
{{- fail (printf "keda.maxReplicaCount %d is above app.partitions %d" (int .Values.keda.maxReplicaCount) $partitions) }}
{{- end }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas is above autoscaling.maxReplicas" }}
{{- end }}
{{- if and .Values.keda.enabled (gt (int .Values.keda.minReplicaCount) (int .Values.keda.maxReplicaCount)) }}
{{- fail "keda.minReplicaCount is above keda.maxReplicaCount" }}
{{- end }}
{{- if and .Values.autoscaling.enabled .Values.keda.enabled }}
{{- fail "autoscaling.enabled and keda.enabled are exclusive: KEDA makes its own HorizontalPodAutoscaler" }}
{{- end }}
{{- if and .Values.keda.enabled (not .Values.app.aggregates) }}
{{- fail "keda.enabled needs app.aggregates: the aggregate types whose commands topics KEDA watches" }}
{{- end }}
{{- if and .Values.keda.enabled (not (has "process" .Values.app.roles)) }}
{{- fail "keda.enabled scales on the processors' lag: app.roles must include process" }}
{{- end }}
{{- if and .Values.kafka.sasl.mechanism (not .Values.kafka.sasl.passwordSecret.name) }}
{{- fail "kafka.sasl.mechanism needs kafka.sasl.passwordSecret.name: an existing Secret with the password" }}
{{- end }}
{{- if and (has .Values.kafka.sasl.mechanism (list "PLAIN" "SCRAM-SHA-256" "SCRAM-SHA-512")) (not .Values.kafka.sasl.username) }}
{{- fail (printf "kafka.sasl.mechanism %s needs kafka.sasl.username" .Values.kafka.sasl.mechanism) }}
{{- end }}
{{- if lt (int .Values.terminationGracePeriodSeconds) 35 }}
{{- fail "terminationGracePeriodSeconds must be at least 35: serve drains for up to 30 s" }}
{{- end }}
{{- with get .Values.app.extraConfig "INTERLOCK_DRAIN_TIMEOUT" }}
{{- $drain := toString . }}
{{- if not (regexMatch "^[0-9]+[sm]$" $drain) }}
{{- fail (printf "app.extraConfig.INTERLOCK_DRAIN_TIMEOUT %q: give whole seconds or minutes (45s, 2m), so that the chart can keep terminationGracePeriodSeconds above it" $drain) }}
{{- end }}
{{- $secs := int (trimSuffix "s" (trimSuffix "m" $drain)) }}
{{- if hasSuffix "m" $drain }}{{ $secs = mul $secs 60 }}{{ end }}
{{- if lt (int $.Values.terminationGracePeriodSeconds) (add $secs 5) }}
{{- fail (printf "terminationGracePeriodSeconds %d is under app.extraConfig.INTERLOCK_DRAIN_TIMEOUT %s plus 5 s: Kubernetes would kill serve in its drain (and the 5 s it takes to stop HTTP)" (int $.Values.terminationGracePeriodSeconds) $drain) }}
{{- end }}
{{- end }}
{{- range .Values.extraSecretFiles }}
{{- if eq .env "INTERLOCK_GATEWAY_TOKEN_FILE" }}
{{- fail "extraSecretFiles: the gateway's token goes in gateway.tokenSecret" }}
{{- end }}
{{- end }}
{{- $instance := "INTERLOCK_INSTANCE_ID: the chart sets it to the pod's name, the stable and unique instance (and transactional) ID each pod needs; do not set it in app.extraConfig or extraSecretFiles" }}
{{- if hasKey .Values.app.extraConfig "INTERLOCK_INSTANCE_ID" }}
{{- fail $instance }}
{{- end }}
{{- range .Values.extraSecretFiles }}
{{- if eq .env "INTERLOCK_INSTANCE_ID" "INTERLOCK_INSTANCE_ID_FILE" }}
{{- fail $instance }}
{{- end }}
{{- end }}
{{- range $k, $_ := .Values.app.extraConfig }}
{{- if has $k (list "INTERLOCK_GATEWAY_MAX_BODY" "INTERLOCK_GATEWAY_TIMEOUT") }}
{{- fail (printf "app.extraConfig.%s: use gateway.maxBodyBytes and gateway.timeout" $k) }}
{{- end }}
{{- end }}
{{- range $k, $_ := .Values.app.extraConfig }}
{{- if has $k (list "INTERLOCK_SASL_PASSWORD" "INTERLOCK_REDIS_PASSWORD" "INTERLOCK_POSTGRES_DSN" "INTERLOCK_GATEWAY_TOKEN" "INTERLOCK_SCHEMA_REGISTRY_PASSWORD" "INTERLOCK_SCHEMA_REGISTRY_TOKEN") }}
{{- fail (printf "app.extraConfig.%s is a secret: the ConfigMap and the topics Job would show it to anyone who may read them; put it in a Secret and name that (kafka.sasl.passwordSecret, redis.passwordSecret, postgres.dsnSecret, or extraSecretFiles with %s_FILE)" $k $k) }}
{{- end }}
{{- end }}
{{- end }}

{{/* Whether Kafka is reached with TLS. */}}
{{- define "interlock.tls" -}}
{{- if or .Values.kafka.tls.enabled .Values.kafka.tls.caSecret.name .Values.kafka.tls.clientSecret.name }}true{{ end }}
{{- end }}

{{/* Where the Secrets are mounted. */}}
{{- define "interlock.secretsDir" -}}/var/run/secrets/interlock{{- end }}

{{/*
The settings, as a map of INTERLOCK_* variables to values: the ConfigMap's
data and the topics Job's environment. With job true it leaves out what only
serve uses (roles, HTTP, Redis, the gateway) and keeps what decides the
application's topics: Kafka, the PostgreSQL DSN (a service may register
projections, with their dead-letter topics, only when it has one),
app.extraConfig and extraSecretFiles (a setting in extraConfig, such as a
schema registry's user, may need its secret file to be valid at all). Called with (dict "root" $ "job" bool).
*/}}
{{- define "interlock.config" -}}
{{- $v := .root.Values }}
{{- $dir := include "interlock.secretsDir" .root }}
{{- $c := dict }}
{{- $_ := set $c "INTERLOCK_NAME" $v.app.name }}
{{- $_ := set $c "INTERLOCK_BROKERS" (join "," $v.kafka.brokers) }}
{{- $_ := set $c "INTERLOCK_PARTITIONS" (toString (int $v.app.partitions)) }}
{{- $_ := set $c "INTERLOCK_REPLICATION_FACTOR" (toString (int $v.app.replicationFactor)) }}
{{- $_ := set $c "INTERLOCK_LOG_LEVEL" $v.app.logLevel }}
{{- if include "interlock.tls" .root }}
{{- $_ := set $c "INTERLOCK_TLS" "true" }}
{{- if $v.kafka.tls.serverName }}
{{- $_ := set $c "INTERLOCK_TLS_SERVER_NAME" $v.kafka.tls.serverName }}
{{- end }}
{{- if $v.kafka.tls.insecureSkipVerify }}
{{- $_ := set $c "INTERLOCK_TLS_INSECURE_SKIP_VERIFY" "true" }}
{{- end }}
{{- if $v.kafka.tls.caSecret.name }}
{{- $_ := set $c "INTERLOCK_TLS_CA_FILE" (printf "%s/kafka-ca/ca.crt" $dir) }}
{{- end }}
{{- if $v.kafka.tls.clientSecret.name }}
{{- $_ := set $c "INTERLOCK_TLS_CERT_FILE" (printf "%s/kafka-client/tls.crt" $dir) }}
{{- $_ := set $c "INTERLOCK_TLS_KEY_FILE" (printf "%s/kafka-client/tls.key" $dir) }}
{{- end }}
{{- end }}
{{- if $v.kafka.sasl.mechanism }}
{{- $_ := set $c "INTERLOCK_SASL_MECHANISM" $v.kafka.sasl.mechanism }}
{{- if $v.kafka.sasl.username }}
{{- $_ := set $c "INTERLOCK_SASL_USERNAME" $v.kafka.sasl.username }}
{{- end }}
{{- $_ := set $c "INTERLOCK_SASL_PASSWORD_FILE" (printf "%s/kafka-sasl/password" $dir) }}
{{- end }}
{{- if $v.postgres.dsnSecret.name }}
{{- $_ := set $c "INTERLOCK_POSTGRES_DSN_FILE" (printf "%s/postgres/dsn" $dir) }}
{{- end }}
{{- if not .job }}
{{- $_ := set $c "INTERLOCK_ROLES" (join "," $v.app.roles) }}
{{- $_ := set $c "INTERLOCK_HTTP_ADDR" (printf ":%d" (int $v.http.port)) }}
{{- if $v.redis.url }}
{{- $_ := set $c "INTERLOCK_REDIS_URL" $v.redis.url }}
{{- end }}
{{- if $v.redis.keyPrefix }}
{{- $_ := set $c "INTERLOCK_REDIS_KEY_PREFIX" $v.redis.keyPrefix }}
{{- end }}
{{- if $v.redis.passwordSecret.name }}
{{- $_ := set $c "INTERLOCK_REDIS_PASSWORD_FILE" (printf "%s/redis/password" $dir) }}
{{- end }}
{{- if $v.gateway.tokenSecret.name }}
{{- $_ := set $c "INTERLOCK_GATEWAY_TOKEN_FILE" (printf "%s/gateway/token" $dir) }}
{{- $_ := set $c "INTERLOCK_GATEWAY_MAX_BODY" (toString (int64 $v.gateway.maxBodyBytes)) }}
{{- $_ := set $c "INTERLOCK_GATEWAY_TIMEOUT" $v.gateway.timeout }}
{{- end }}
{{- end }}
{{- /* Where each variable the chart sets comes from, for the errors of what would override it. */}}
{{- $from := dict
  "INTERLOCK_NAME" "app.name" "INTERLOCK_BROKERS" "kafka.brokers" "INTERLOCK_PARTITIONS" "app.partitions"
  "INTERLOCK_REPLICATION_FACTOR" "app.replicationFactor" "INTERLOCK_LOG_LEVEL" "app.logLevel" "INTERLOCK_ROLES" "app.roles"
  "INTERLOCK_HTTP_ADDR" "http.port" "INTERLOCK_TLS" "kafka.tls" "INTERLOCK_TLS_SERVER_NAME" "kafka.tls.serverName"
  "INTERLOCK_TLS_INSECURE_SKIP_VERIFY" "kafka.tls.insecureSkipVerify" "INTERLOCK_TLS_CA_FILE" "kafka.tls.caSecret"
  "INTERLOCK_TLS_CERT_FILE" "kafka.tls.clientSecret" "INTERLOCK_TLS_KEY_FILE" "kafka.tls.clientSecret"
  "INTERLOCK_SASL_MECHANISM" "kafka.sasl.mechanism" "INTERLOCK_SASL_USERNAME" "kafka.sasl.username"
  "INTERLOCK_SASL_PASSWORD_FILE" "kafka.sasl.passwordSecret" "INTERLOCK_POSTGRES_DSN_FILE" "postgres.dsnSecret"
  "INTERLOCK_REDIS_URL" "redis.url" "INTERLOCK_REDIS_KEY_PREFIX" "redis.keyPrefix" "INTERLOCK_REDIS_PASSWORD_FILE" "redis.passwordSecret"
  "INTERLOCK_GATEWAY_TOKEN_FILE" "gateway.tokenSecret" }}
{{- $extra := dict }}
{{- range $i, $f := $v.extraSecretFiles }}
{{- if hasKey $extra $f.env }}
{{- fail (printf "extraSecretFiles[%d].env %s: extraSecretFiles[%d] sets it already" $i $f.env (get $extra $f.env)) }}
{{- end }}
{{- if hasKey $c $f.env }}
{{- fail (printf "extraSecretFiles[%d].env %s: the chart sets it already, from %s; set that instead" $i $f.env (get $from $f.env)) }}
{{- end }}
{{- $_ := set $extra $f.env $i }}
{{- $_ := set $c $f.env (printf "%s/extra-%d/%s" $dir $i $f.key) }}
{{- end }}
{{- /* Last, and never over what the chart set: the value would be lost, or win unseen. */}}
{{- range $k, $val := $v.app.extraConfig }}
{{- if hasKey $c $k }}
{{- fail (printf "app.extraConfig.%s: the chart sets it already, from %s; set that instead" $k (get $from $k | default "extraSecretFiles")) }}
{{- end }}
{{- $_ := set $c $k (toString $val) }}
{{- end }}
{{- toYaml $c }}
{{- end }}

{{/*
One Secret volume per referenced Secret, each key mounted under its own file
name. Called with (dict "root" $ "job" bool); renders a YAML list, or
nothing.
*/}}
{{- define "interlock.secretVolumes" -}}
{{- $v := .root.Values }}
{{- $vols := list }}
{{- if $v.kafka.tls.caSecret.name }}
{{- $vols = append $vols (dict "name" "kafka-ca" "secret" (dict "secretName" $v.kafka.tls.caSecret.name "defaultMode" 288 "items" (list (dict "key" $v.kafka.tls.caSecret.key "path" "ca.crt")))) }}
{{- end }}
{{- if $v.kafka.tls.clientSecret.name }}
{{- $vols = append $vols (dict "name" "kafka-client" "secret" (dict "secretName" $v.kafka.tls.clientSecret.name "defaultMode" 288 "items" (list (dict "key" $v.kafka.tls.clientSecret.certKey "path" "tls.crt") (dict "key" $v.kafka.tls.clientSecret.keyKey "path" "tls.key")))) }}
{{- end }}
{{- if $v.kafka.sasl.mechanism }}
{{- $vols = append $vols (dict "name" "kafka-sasl" "secret" (dict "secretName" $v.kafka.sasl.passwordSecret.name "defaultMode" 288 "items" (list (dict "key" $v.kafka.sasl.passwordSecret.key "path" "password")))) }}
{{- end }}
{{- if $v.postgres.dsnSecret.name }}
{{- $vols = append $vols (dict "name" "postgres" "secret" (dict "secretName" $v.postgres.dsnSecret.name "defaultMode" 288 "items" (list (dict "key" $v.postgres.dsnSecret.key "path" "dsn")))) }}
{{- end }}
{{- if not .job }}
{{- if $v.redis.passwordSecret.name }}
{{- $vols = append $vols (dict "name" "redis" "secret" (dict "secretName" $v.redis.passwordSecret.name "defaultMode" 288 "items" (list (dict "key" $v.redis.passwordSecret.key "path" "password")))) }}
{{- end }}
{{- if $v.gateway.tokenSecret.name }}
{{- $vols = append $vols (dict "name" "gateway" "secret" (dict "secretName" $v.gateway.tokenSecret.name "defaultMode" 288 "items" (list (dict "key" $v.gateway.tokenSecret.key "path" "token")))) }}
{{- end }}
{{- end }}
{{- range $i, $f := $v.extraSecretFiles }}
{{- $vols = append $vols (dict "name" (printf "extra-%d" $i) "secret" (dict "secretName" $f.secret "defaultMode" 288 "items" (list (dict "key" $f.key "path" $f.key)))) }}
{{- end }}
{{- if $vols }}
{{- toYaml $vols }}
{{- end }}
{{- end }}

{{/* The mounts of interlock.secretVolumes, read-only, under interlock.secretsDir. Same argument. */}}
{{- define "interlock.secretMounts" -}}
{{- $dir := include "interlock.secretsDir" .root }}
{{- $mounts := list }}
{{- range (include "interlock.secretVolumes" . | fromYamlArray) }}
{{- $mounts = append $mounts (dict "name" .name "mountPath" (printf "%s/%s" $dir .name) "readOnly" true) }}
{{- end }}
{{- if $mounts }}
{{- toYaml $mounts }}
{{- end }}
{{- end }}
