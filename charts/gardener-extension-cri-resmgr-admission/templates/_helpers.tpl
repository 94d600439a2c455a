{{- /* Names fixed by the binary (src/runtime/registration.rs ADMISSION_CONFIG_NAME): keep them in step. */ -}}

{{- define "admission.name" -}}
gardener-extension-cri-resmgr-admission
{{- end -}}

{{- /* The webhook configurations the server registers (both kinds carry this name). */ -}}
{{- define "admission.webhookConfigName" -}}
gardener-extension-cri-resmgr-admission
{{- end -}}

{{- /*
The Secret the binary keeps the webhook CA and serving certificate in (--webhook-cert-secret), in the cluster it talks
to (see webhook.tls in values.yaml). Not rendered: the binary creates and renews it. Named apart from the
Helm-generated `gardener-extension-cri-resmgr-admission-webhook-tls` of earlier chart versions, which an upgrade
prunes.
*/ -}}
{{- define "admission.webhookCertSecretName" -}}
gardener-extension-cri-resmgr-admission-webhook-certs
{{- end -}}

{{- define "admission.webhookCertSecretNamespace" -}}
{{- .Values.webhook.tls.secretNamespace | default .Release.Namespace -}}
{{- end -}}

{{- /* The identities the application part grants its permissions to. */ -}}
{{- define "admission.subjects" -}}
{{- if .Values.application.subjects -}}
{{ toYaml .Values.application.subjects }}
{{- else -}}
- kind: ServiceAccount
  name: {{ include "admission.name" . }}
  namespace: {{ .Release.Namespace }}
{{- end -}}
{{- end -}}

{{- define "admission.certDir" -}}
/etc/gardener-extension-cri-resmgr-admission/webhook-certs
{{- end -}}

{{- define "admission.kubeconfigDir" -}}
/etc/gardener-extension-cri-resmgr-admission/garden-kubeconfig
{{- end -}}

{{- define "admission.selectorLabels" -}}
app.kubernetes.io/name: {{ include "admission.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "admission.labels" -}}
{{ include "admission.selectorLabels" . }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "admission.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if hasPrefix "sha256:" $tag -}}
{{ .Values.image.repository }}@{{ $tag }}
{{- else -}}
{{ .Values.image.repository }}:{{ $tag }}
{{- end -}}
{{- end -}}

{{- /* host[:port] for --webhook-config-url: the Service by its `<name>.<namespace>` DNS name unless configured. */ -}}
{{- define "admission.configUrl" -}}
{{- $service := printf "%s.%s" (include "admission.name" .) .Release.Namespace -}}
{{- if ne (int .Values.webhook.servicePort) 443 -}}
{{- $service = printf "%s:%d" $service (int .Values.webhook.servicePort) -}}
{{- end -}}
{{- .Values.webhook.configUrl | default $service -}}
{{- end -}}
