{{/*
Names. Kubernetes names are at most 63 characters (DNS labels), hence the truncation.
*/}}
{{- define "reco-engine.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "reco-engine.fullname" -}}
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

{{/* The name of one part of the release: "<fullname>-<part>". */}}
{{- define "reco-engine.partName" -}}
{{- printf "%s-%s" (include "reco-engine.fullname" .root) .part | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "reco-engine.operator.fullname" -}}
{{- include "reco-engine.partName" (dict "root" . "part" "operator") }}
{{- end }}

{{- define "reco-engine.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "reco-engine.operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "reco-engine.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels. The operator labels the engine's own objects app.kubernetes.io/name=reco-engine and
instance=<RecoEngine name>; a RecoEngine may share the release's name, so every selector of
the chart also names its component, which the engine's roles never use.
*/}}
{{- define "reco-engine.labels" -}}
helm.sh/chart: {{ include "reco-engine.chart" . }}
{{ include "reco-engine.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: reco-engine
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "reco-engine.selectorLabels" -}}
app.kubernetes.io/name: {{ include "reco-engine.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels and selector labels of one component: (dict "root" $ "component" "operator"). */}}
{{- define "reco-engine.componentLabels" -}}
{{ include "reco-engine.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "reco-engine.componentSelectorLabels" -}}
{{ include "reco-engine.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* An image reference from {repository, tag, digest}; the tag defaults to appVersion. */}}
{{- define "reco-engine.image" -}}
{{- $image := .image }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default .root.Chart.AppVersion $image.tag | toString) }}
{{- end }}
{{- end }}

{{/*
The restricted Pod Security Standard for the laptop dependencies, as the uid of each
official image: the chart's own pods take theirs from values.
*/}}
{{- define "reco-engine.dev.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "reco-engine.dev.securityContext" -}}
runAsNonRoot: true
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: ["ALL"]
{{- end }}

{{- define "reco-engine.dev.secretName" -}}
{{- include "reco-engine.partName" (dict "root" . "part" "dev-backends") }}
{{- end }}

{{/* The Services of the laptop dependencies. */}}
{{- define "reco-engine.dev.kafkaName" -}}
{{- include "reco-engine.partName" (dict "root" . "part" "kafka") }}
{{- end }}

{{- define "reco-engine.dev.redisName" -}}
{{- include "reco-engine.partName" (dict "root" . "part" "redis") }}
{{- end }}

{{- define "reco-engine.dev.postgresqlName" -}}
{{- include "reco-engine.partName" (dict "root" . "part" "postgresql") }}
{{- end }}

{{/*
The RecoEngine's spec: recoEngine.spec, with kafka / redis / postgres filled in from the
laptop dependencies that are enabled and that the spec leaves out. The user's spec wins.
*/}}
{{- define "reco-engine.recoEngine.spec" -}}
{{- $spec := deepCopy (.Values.recoEngine.spec | default dict) }}
{{- $secret := include "reco-engine.dev.secretName" . }}
{{- if and .Values.dev.kafka.enabled (not (dig "kafka" "bootstrapServers" "" $spec)) }}
{{- $kafka := get $spec "kafka" | default dict }}
{{- $_ := set $kafka "bootstrapServers" (printf "%s:9092" (include "reco-engine.dev.kafkaName" .)) }}
{{- $_ := set $spec "kafka" $kafka }}
{{- end }}
{{- if and .Values.dev.redis.enabled (not (dig "redis" "urlSecretRef" "" $spec)) }}
{{- $redis := get $spec "redis" | default dict }}
{{- $_ := set $redis "urlSecretRef" (dict "name" $secret "key" "redis-url") }}
{{- $_ := set $spec "redis" $redis }}
{{- end }}
{{- if and .Values.dev.postgresql.enabled (not (dig "postgres" "urlSecretRef" "" $spec)) }}
{{- $postgres := get $spec "postgres" | default dict }}
{{- $_ := set $postgres "urlSecretRef" (dict "name" $secret "key" "database-url") }}
{{- $_ := set $spec "postgres" $postgres }}
{{- end }}
{{- toYaml $spec }}
{{- end }}

{{/* The RecoEngine `helm test` checks: the chart's own, else tests.recoEngineName. */}}
{{- define "reco-engine.tests.target" -}}
{{- if .Values.recoEngine.create }}
{{- .Values.recoEngine.name }}
{{- else }}
{{- .Values.tests.recoEngineName }}
{{- end }}
{{- end }}

{{/*
Checks that values.schema.json cannot express, each failing with what to change. NOTES.txt
includes it: helm renders NOTES.txt for install, upgrade, template and lint alike.
*/}}
{{- define "reco-engine.validateValues" -}}
{{- $errors := list }}
{{- $operator := .Values.operator }}
{{- if and (gt (int $operator.replicaCount) 1) (not $operator.leaderElection.enabled) }}
{{- $errors = append $errors (printf "operator.replicaCount is %d with operator.leaderElection.enabled=false: every replica would reconcile the same RecoEngines at once. Use one replica, or keep leader election on." (int $operator.replicaCount)) }}
{{- end }}
{{- if and .Values.rbac.create (not .Values.serviceAccount.create) (not .Values.serviceAccount.name) }}
{{- $errors = append $errors "serviceAccount.create=false needs serviceAccount.name: without it the operator's rights would go to the namespace's default ServiceAccount, that is, to every pod in it." }}
{{- end }}
{{- if and .Values.recoEngine.create .Values.watchNamespaces (not (has .Release.Namespace .Values.watchNamespaces)) }}
{{- $errors = append $errors (printf "recoEngine.create=true puts the RecoEngine into the release namespace %s, which watchNamespaces (%s) leaves out: the operator would never reconcile it. Add %s to watchNamespaces." .Release.Namespace (join ", " .Values.watchNamespaces) .Release.Namespace) }}
{{- end }}
{{- if .Values.recoEngine.create }}
{{- $spec := include "reco-engine.recoEngine.spec" . | fromYaml }}
{{- if not (dig "kafka" "bootstrapServers" "" $spec) }}
{{- $errors = append $errors "recoEngine.create=true needs Kafka: set recoEngine.spec.kafka.bootstrapServers to your brokers, or dev.kafka.enabled=true for a laptop Kafka." }}
{{- end }}
{{- if not (dig "redis" "urlSecretRef" "name" "" $spec) }}
{{- $errors = append $errors "recoEngine.create=true needs Redis: set recoEngine.spec.redis.urlSecretRef to {name, key} of a Secret holding the Redis URL, or dev.redis.enabled=true for a laptop Redis." }}
{{- end }}
{{- if not (dig "postgres" "urlSecretRef" "name" "" $spec) }}
{{- $errors = append $errors "recoEngine.create=true needs PostgreSQL: set recoEngine.spec.postgres.urlSecretRef to {name, key} of a Secret holding the database URL, or dev.postgresql.enabled=true for a laptop PostgreSQL." }}
{{- end }}
{{- end }}
{{- if and .Values.dashboards.enabled (not (.Files.Get "dashboards/reco-engine.json")) }}
{{- $errors = append $errors "dashboards.enabled=true but the chart has no dashboards/reco-engine.json: the chart was packaged without it." }}
{{- end }}
{{- if $errors }}
{{- fail (printf "\n\nInvalid values for the reco-engine chart:\n  - %s\n" (join "\n  - " $errors)) }}
{{- end }}
{{- end }}
