{{/*
The chart name, or nameOverride. Truncated to 63 characters (the DNS label limit).
*/}}
{{- define "pretrain-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name that prefixes every object: fullnameOverride, else `<release>-<name>` (just `<release>` when the
release name already contains the chart name). Truncated to 63 characters.
*/}}
{{- define "pretrain-operator.fullname" -}}
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

{{/*
The full name plus a suffix, `<fullname>-<suffix>`, still within 63 characters (the full name gives way).
Usage: include "pretrain-operator.suffixedName" (list . "metrics")
*/}}
{{- define "pretrain-operator.suffixedName" -}}
{{- $ctx := index . 0 }}
{{- $suffix := index . 1 }}
{{- $max := sub 62 (len $suffix) | int }}
{{- printf "%s-%s" (include "pretrain-operator.fullname" $ctx | trunc $max | trimSuffix "-") $suffix }}
{{- end }}

{{/*
`<chart>-<version>` for the helm.sh/chart label.
*/}}
{{- define "pretrain-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels that select the operator pod. Never change these on upgrade: a Deployment's selector is immutable.
*/}}
{{- define "pretrain-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pretrain-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
Standard labels on every object the chart creates.
*/}}
{{- define "pretrain-operator.labels" -}}
helm.sh/chart: {{ include "pretrain-operator.chart" . }}
{{ include "pretrain-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pretrain-operator
{{- end }}

{{/*
The operator's ServiceAccount name.
*/}}
{{- define "pretrain-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pretrain-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator image reference.
*/}}
{{- define "pretrain-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
The default trainer image reference (--default-image).
*/}}
{{- define "pretrain-operator.trainerImage" -}}
{{- printf "%s:%s" .Values.trainerImage.repository (.Values.trainerImage.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
The namespaces the operator watches when watch.allNamespaces is false, as a JSON list (use with fromJsonArray):
watch.namespaces, or the release namespace when that is empty.
*/}}
{{- define "pretrain-operator.watchNamespaces" -}}
{{- .Values.watch.namespaces | default (list .Release.Namespace) | uniq | toJson }}
{{- end }}

{{/*
Rules for the namespaced resources the operator reads and writes: its own custom resources and the children it
creates for each job (worker pods, a headless Service, a ConfigMap), plus the Events kopf and the handlers post.
No Secrets: worker pods name the S3 credentials Secret, the operator never reads it.
*/}}
{{- define "pretrain-operator.namespacedRules" -}}
- apiGroups: ["pretrain-operator.dev"]
  resources: ["pretrainjobs"]
  verbs: ["get", "list", "watch", "patch", "update", "delete"]
- apiGroups: ["pretrain-operator.dev"]
  resources: ["pretrainjobs/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "create", "delete", "patch"]
- apiGroups: [""]
  resources: ["services", "configmaps"]
  verbs: ["get", "list", "watch", "create", "delete", "patch"]
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
Cluster-scoped reads kopf needs to scan namespaces and find its custom resource definition, and the operator's
look at the nodes of a gang whose trainers stopped (in-place restarts only on Ready nodes).
*/}}
{{- define "pretrain-operator.clusterRules" -}}
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
{{- end }}
