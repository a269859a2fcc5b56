{{/* Names: cut to 63 characters, the limit of a DNS label. */}}
{{- define "assay.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "assay.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "assay.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "assay.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "assay.operator.fullname" -}}
{{- printf "%s-operator" (include "assay.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "assay.gateway.fullname" -}}
{{- printf "%s-gateway" (include "assay.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "assay.keys.secretName" -}}
{{- .Values.keys.existingSecret | default (printf "%s-keys" (include "assay.fullname" .)) }}
{{- end }}

{{/* Labels. Selectors carry no chart version, so that upgrades keep matching the pods. */}}
{{- define "assay.selectorLabels" -}}
app.kubernetes.io/name: {{ include "assay.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "assay.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "assay.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: assay
{{- end }}

{{- define "assay.image" -}}
{{- printf "%s:%s" .image.repository (.image.tag | default .root.Chart.AppVersion) }}
{{- end }}

{{- define "assay.gateway.serviceUrl" -}}
{{- printf "http://%s.%s.svc:%v" (include "assay.gateway.fullname" .) .Release.Namespace .Values.gateway.service.port }}
{{- end }}

{{- define "assay.gateway.publicUrl" -}}
{{- if .Values.gateway.publicUrl }}
{{- .Values.gateway.publicUrl }}
{{- else if .Values.gateway.ingress.enabled }}
{{- printf "%s://%s" (ternary "https" "http" (ne .Values.gateway.ingress.tlsSecretName "")) .Values.gateway.ingress.host }}
{{- else }}
{{- include "assay.gateway.serviceUrl" . }}
{{- end }}
{{- end }}

{{/* Every container: non-root, no privilege escalation, no capabilities, read-only root. */}}
{{- define "assay.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "assay.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "assay.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The egress policy (SECURITY.md) as container env, for the gateway and the operator. */}}
{{- define "assay.egressEnv" -}}
- name: ASSAY_EGRESS_ALLOW
  value: {{ join "," .Values.egress.allow | quote }}
- name: ASSAY_EGRESS_DENY
  value: {{ join "," .Values.egress.deny | quote }}
{{- end }}
