{{/*
The objects' name: fullnameOverride, else the release name when it already
contains the chart's name, else "<release>-<chart>". `helm install
spartakus-volunteer` gives the names k8s/volunteer uses.
*/}}
{{- define "spartakus-volunteer.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end }}

{{/*
The labels k8s/base/volunteer gives every object, and no others, so that this
chart, k8s/volunteer and k8s/install.yaml render the same objects (a test
compares them). A CronJob selects nothing by label; helm finds its objects
through its release record, not through labels.
*/}}
{{- define "spartakus-volunteer.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/part-of: spartakus
{{- end }}

{{/*
The schedule: the value, else daily at 03:MM UTC where MM is derived from the
kube-system namespace's UID (read at install and upgrade, so it is the same on
every upgrade and differs between clusters). `helm template` and `helm lint`
cannot read the cluster: there MM is 17, k8s/volunteer's placeholder.
*/}}
{{- define "spartakus-volunteer.schedule" -}}
{{- if .Values.schedule -}}
{{- .Values.schedule -}}
{{- else -}}
{{- $minute := 17 -}}
{{- $uid := dig "metadata" "uid" "" (lookup "v1" "Namespace" "" "kube-system") -}}
{{- if $uid -}}
{{- $minute = mod (atoi (adler32sum $uid)) 60 -}}
{{- end -}}
{{- printf "%d 3 * * *" (int $minute) -}}
{{- end -}}
{{- end }}

{{/* The image by digest when one is given, else by tag (default: appVersion). */}}
{{- define "spartakus-volunteer.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end }}
