{{/* The controller's objects are named after the release: image-clone -> image-clone-controller. */}}
{{- define "image-clone.fullname" -}}
{{- printf "%s-controller" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The labels deploy/ has always used; the Deployment's selector is immutable, so they stay as they are. */}}
{{- define "image-clone.selectorLabels" -}}
app.kubernetes.io/name: image-clone
app.kubernetes.io/component: controller
{{- end -}}

{{- define "image-clone.labels" -}}
{{ include "image-clone.selectorLabels" . }}
{{- end -}}

{{- define "image-clone.leaseName" -}}
{{- .Values.leaderElection.id | default (include "image-clone.fullname" .) -}}
{{- end -}}

{{- define "image-clone.credentialsSecret" -}}
{{- .Values.credentials.existingSecret | default (printf "%s-backup-credentials" .Release.Name) -}}
{{- end -}}

{{- define "image-clone.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}
