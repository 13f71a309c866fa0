{{/* The release's name, for the operator's objects. */}}
{{- define "kubemail.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kubemail.operator" -}}
{{- printf "%s-operator" (include "kubemail.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The recommended labels of every object the chart makes. */}}
{{- define "kubemail.labels" -}}
app.kubernetes.io/name: kubemail
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "kubemail.operatorSelector" -}}
app.kubernetes.io/name: kubemail
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "kubemail.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* A component's spec in the MailCluster: replicas and resources. */}}
{{- define "kubemail.component" -}}
replicas: {{ .replicas }}
{{- with .resources }}
resources:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "kubemail.service" -}}
service:
  type: {{ .type }}
  externalTrafficPolicy: {{ .externalTrafficPolicy }}
  {{- with .annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
