{{- /* Names fixed by the binary's defaults and constants (src/constants.rs, src/runtime/serving.rs): keep them in step. */ -}}

{{- define "cri-resmgr.name" -}}
gardener-extension-cri-resmgr
{{- end -}}

{{- /* ConfigMap the controller reads the base configs from (BASE_CONFIGS_CONFIG_MAP). */ -}}
{{- define "cri-resmgr.configsName" -}}
gardener-extension-cri-resmgr-configs
{{- end -}}

{{- define "cri-resmgr.imageVectorOverwriteName" -}}
gardener-extension-cri-resmgr-imagevector-overwrite
{{- end -}}

{{- /* Leases the controller writes (LEADER_ELECTION_LEASE_NAME, HEARTBEAT_LEASE_NAME). */ -}}
{{- define "cri-resmgr.leaderElectionLease" -}}
gardener-extension-cri-resmgr-leader-election
{{- end -}}
{{- define "cri-resmgr.heartbeatLease" -}}
gardener-extension-heartbeat
{{- end -}}

{{- /*
The Secret the binary keeps the webhook CA and serving certificate in (--webhook-cert-secret). The chart does not
render it: the first replica creates it, every replica reads it and renews it before expiry. Named apart from the
Helm-generated `gardener-extension-cri-resmgr-webhook-tls` of earlier chart versions, which an upgrade prunes.
*/ -}}
{{- define "cri-resmgr.webhookCertSecretName" -}}
gardener-extension-cri-resmgr-webhook-certs
{{- end -}}

{{- define "cri-resmgr.certDir" -}}
/etc/gardener-extension-cri-resmgr/webhook-certs
{{- end -}}

{{- define "cri-resmgr.imageVectorOverwriteDir" -}}
/etc/gardener-extension-cri-resmgr/imagevector
{{- end -}}

{{- define "cri-resmgr.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cri-resmgr.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cri-resmgr.labels" -}}
{{ include "cri-resmgr.selectorLabels" . }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "cri-resmgr.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if hasPrefix "sha256:" $tag -}}
{{ .Values.image.repository }}@{{ $tag }}
{{- else -}}
{{ .Values.image.repository }}:{{ $tag }}
{{- end -}}
{{- end -}}

{{- /* A config given as text stays as it is; a mapping is written out as YAML text. */ -}}
{{- define "cri-resmgr.text" -}}
{{- if kindIs "string" . -}}
{{ . }}
{{- else -}}
{{ toYaml . }}
{{- end -}}
{{- end -}}

{{- /* The image vector overwrite as file content ("" when unset). */ -}}
{{- define "cri-resmgr.imageVectorOverwrite" -}}
{{- if .Values.imageVectorOverwrite -}}
{{ include "cri-resmgr.text" .Values.imageVectorOverwrite }}
{{- end -}}
{{- end -}}
