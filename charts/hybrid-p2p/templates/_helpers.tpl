{{/* The release's full name: "<release>" when it already contains the chart name. */}}
{{- define "hybrid-p2p.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "hybrid-p2p.selectorLabels" -}}
app.kubernetes.io/name: hybrid-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "hybrid-p2p.labels" -}}
{{ include "hybrid-p2p.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: hybrid-p2p
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "hybrid-p2p.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "hybrid-p2p.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/* Role or ClusterRole: a namespaced install gets only a Role in the watched namespace. */}}
{{- define "hybrid-p2p.roleKind" -}}
{{- if .Values.watchNamespace -}}Role{{- else -}}ClusterRole{{- end -}}
{{- end -}}
