{{/* The three services; every per-service template ranges over them. */}}
{{- define "bookify.services" -}}
gateway booking consumer
{{- end -}}

{{- define "bookify.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "bookify.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* <fullname>-<service>; 50 + 1 + 8 stays under the 63 characters of a label value. */}}
{{- define "bookify.componentName" -}}
{{- printf "%s-%s" (include "bookify.fullname" .root) .name -}}
{{- end -}}

{{- define "bookify.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bookify.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "bookify.labels" -}}
{{ include "bookify.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: bookify
{{- end -}}

{{- define "bookify.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "bookify.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "bookify.image" -}}
{{- $svc := index .root.Values .name -}}
{{- $tag := $svc.image.tag | default .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{- $version := ternary (print "@" $svc.image.digest) (print ":" $tag) (ne "" ($svc.image.digest | default "")) -}}
{{- if .root.Values.image.registry -}}
{{- printf "%s/%s%s" (trimSuffix "/" .root.Values.image.registry) $svc.image.repository $version -}}
{{- else -}}
{{- printf "%s%s" $svc.image.repository $version -}}
{{- end -}}
{{- end -}}

{{/* Settings prefix of a service (services/<name>/src/<name>/config.py). */}}
{{- define "bookify.envPrefix" -}}
{{- printf "BOOKIFY_%s_" (upper .) -}}
{{- end -}}

{{/* The Secret holding the JWT secret, and its key. */}}
{{- define "bookify.jwtSecretName" -}}
{{- .Values.auth.existingSecret | default (include "bookify.fullname" .) -}}
{{- end -}}

{{- define "bookify.jwtSecretKey" -}}
{{- if .Values.auth.existingSecret -}}{{ .Values.auth.existingSecretKey }}{{- else -}}jwt-secret{{- end -}}
{{- end -}}

{{/* The consumer group as the broker sees it (shared.settings.Topics.group). */}}
{{- define "bookify.consumerGroup" -}}
{{- $svc := index .root.Values .name -}}
{{- printf "%s%s" .root.Values.kafka.topicPrefix $svc.groupId -}}
{{- end -}}

{{/* The topic a subscriber reads (booking: commands, consumer: events). */}}
{{- define "bookify.topic" -}}
{{- $topics := dict "booking" "bookify.commands" "consumer" "bookify.events" -}}
{{- printf "%s%s" .root.Values.kafka.topicPrefix (get $topics .name) -}}
{{- end -}}

{{/* Replicas are left to the HPA (gateway) or KEDA (booking, consumer) when one is on. */}}
{{- define "bookify.autoscaled" -}}
{{- $svc := index .root.Values .name -}}
{{- if and $svc.autoscaling $svc.autoscaling.enabled -}}true
{{- else if and $svc.keda $svc.keda.enabled -}}true
{{- end -}}
{{- end -}}

{{/*
A service's environment: its settings (BOOKIFY_<SERVICE>_<FIELD>), the shared
BOOKIFY_ENVIRONMENT, the OTel SDK's variables, then `<service>.env` over them. Each name
appears once. The secrets come from Secrets and cannot be overridden through `env`.
*/}}
{{- define "bookify.env" -}}
{{- $root := .root -}}
{{- $name := .name -}}
{{- $svc := index $root.Values $name -}}
{{- $p := include "bookify.envPrefix" $name -}}
{{- $kafka := $root.Values.kafka -}}
{{- $env := dict "BOOKIFY_ENVIRONMENT" $root.Values.environment -}}
{{- $_ := set $env (print $p "HOST") "0.0.0.0" -}}
{{- $_ := set $env (print $p "PORT") (toString $svc.port) -}}
{{- $_ := set $env (print $p "LOG_LEVEL") $svc.logLevel -}}
{{- $_ := set $env (print $p "KAFKA_BOOTSTRAP_SERVERS") $kafka.bootstrapServers -}}
{{- $_ := set $env (print $p "TOPIC_PREFIX") $kafka.topicPrefix -}}
{{- $_ := set $env (print $p "TOPIC_PARTITIONS") (toString $kafka.topicPartitions) -}}
{{- $_ := set $env (print $p "TOPIC_REPLICATION_FACTOR") (toString $kafka.topicReplicationFactor) -}}
{{- if not (kindIs "invalid" $kafka.topicMinInsyncReplicas) -}}
{{- $_ := set $env (print $p "TOPIC_MIN_INSYNC_REPLICAS") (toString $kafka.topicMinInsyncReplicas) -}}
{{- end -}}
{{- $_ := set $env (print $p "CREATE_TOPICS") (toString $kafka.createTopics) -}}
{{- $_ := set $env "BOOKIFY_KAFKA_SECURITY_PROTOCOL" $kafka.securityProtocol -}}
{{- if $kafka.allowPlaintext -}}
{{- $_ := set $env "BOOKIFY_KAFKA_ALLOW_PLAINTEXT" "true" -}}
{{- end -}}
{{- $saslSecret := include "bookify.kafkaSaslSecret" . -}}
{{- if $saslSecret -}}
{{- $_ := set $env "BOOKIFY_KAFKA_SASL_MECHANISM" $kafka.sasl.mechanism -}}
{{- if not $kafka.sasl.usernameKey -}}
{{- $_ := set $env "BOOKIFY_KAFKA_SASL_USERNAME" $saslSecret -}}
{{- end -}}
{{- end -}}
{{- if $kafka.tls.caSecret -}}
{{- $_ := set $env "BOOKIFY_KAFKA_SSL_CA_FILE" (print "/etc/bookify/kafka/ca/" $kafka.tls.caKey) -}}
{{- end -}}
{{- if $kafka.tls.clientSecret -}}
{{- $_ := set $env "BOOKIFY_KAFKA_SSL_CERT_FILE" "/etc/bookify/kafka/client/tls.crt" -}}
{{- $_ := set $env "BOOKIFY_KAFKA_SSL_KEY_FILE" "/etc/bookify/kafka/client/tls.key" -}}
{{- end -}}
{{- if $svc.groupId -}}
{{- $_ := set $env (print $p "GROUP_ID") $svc.groupId -}}
{{- end -}}
{{- if not $root.Values.mongodb.existingSecret -}}
{{- $_ := set $env (print $p "MONGO_URI") $root.Values.mongodb.uri -}}
{{- end -}}
{{- if eq $name "gateway" -}}
{{- $_ := set $env (print $p "DRAIN_SECONDS") (toString $svc.drainSeconds) -}}
{{- end -}}
{{- if and (eq $name "gateway") (not $root.Values.redis.existingSecret) -}}
{{- $_ := set $env (print $p "RATE_LIMIT_STORAGE") $root.Values.redis.url -}}
{{- end -}}
{{- if $root.Values.otel.endpoint -}}
{{- $_ := set $env "OTEL_EXPORTER_OTLP_ENDPOINT" $root.Values.otel.endpoint -}}
{{- end -}}
{{- $fromSecrets := list "BOOKIFY_AUTH_JWT_SECRET" (print $p "MONGO_URI") "BOOKIFY_GATEWAY_RATE_LIMIT_STORAGE" "BOOKIFY_KAFKA_SASL_USERNAME" "BOOKIFY_KAFKA_SASL_PASSWORD" -}}
{{- range $key, $value := $svc.env -}}
{{- if has $key $fromSecrets -}}
{{- fail (printf "%s.env.%s: set it through auth.* / mongodb.* / redis.* / kafka.sasl.* (it may be read from a Secret)" $name $key) -}}
{{- end -}}
{{- $_ := set $env $key (toString $value) -}}
{{- end -}}
{{- range $key, $value := $env }}
- name: {{ $key }}
  value: {{ $value | quote }}
{{- end }}
{{- if eq $name "gateway" }}
{{- /* Only the gateway checks tokens in prod (booking's and the consumer's fault switch is off there). */}}
- name: BOOKIFY_AUTH_JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "bookify.jwtSecretName" $root }}
      key: {{ include "bookify.jwtSecretKey" $root }}
{{- end }}
{{- if $root.Values.mongodb.existingSecret }}
- name: {{ $p }}MONGO_URI
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.mongodb.existingSecret }}
      key: {{ $root.Values.mongodb.existingSecretKey }}
{{- end }}
{{- if $saslSecret }}
{{- if $kafka.sasl.usernameKey }}
- name: BOOKIFY_KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $saslSecret }}
      key: {{ $kafka.sasl.usernameKey }}
{{- end }}
- name: BOOKIFY_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $saslSecret }}
      key: {{ $kafka.sasl.passwordKey }}
{{- end }}
{{- if and (eq $name "gateway") $root.Values.redis.existingSecret }}
- name: {{ $p }}RATE_LIMIT_STORAGE
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.redis.existingSecret }}
      key: {{ $root.Values.redis.existingSecretKey }}
{{- end }}
{{- end -}}

{{/*
Refuse to render what the services would refuse to run with, with a message that says
what to set. Included once, by deployment.yaml.
*/}}
{{/* The Secret with a service's SASL login ("" without SASL): its own, else the shared one. */}}
{{- define "bookify.kafkaSaslSecret" -}}
{{- $kafka := .root.Values.kafka -}}
{{- if hasPrefix "SASL_" $kafka.securityProtocol -}}
{{- index $kafka.sasl.serviceSecrets .name | default $kafka.sasl.existingSecret -}}
{{- end -}}
{{- end -}}

{{/* The Kafka TLS files of every pod: the CA bundle and the mTLS client certificate. */}}
{{- define "bookify.kafkaVolumeMounts" -}}
{{- with .Values.kafka.tls.caSecret }}
- name: kafka-ca
  mountPath: /etc/bookify/kafka/ca
  readOnly: true
{{- end }}
{{- with .Values.kafka.tls.clientSecret }}
- name: kafka-client
  mountPath: /etc/bookify/kafka/client
  readOnly: true
{{- end }}
{{- end -}}

{{- define "bookify.kafkaVolumes" -}}
{{- with .Values.kafka.tls.caSecret }}
- name: kafka-ca
  secret:
    secretName: {{ . }}
{{- end }}
{{- with .Values.kafka.tls.clientSecret }}
- name: kafka-client
  secret:
    secretName: {{ . }}
{{- end }}
{{- end -}}

{{- define "bookify.validate" -}}
{{- $auth := .Values.auth -}}
{{- if and $auth.existingSecret $auth.jwtSecret -}}
{{- fail "auth: set either auth.existingSecret or auth.jwtSecret, not both" -}}
{{- end -}}
{{- if not (or $auth.existingSecret $auth.jwtSecret) -}}
{{- fail "auth: no JWT secret. Set auth.existingSecret to a Secret you created (key auth.existingSecretKey, default jwt-secret), or pass --set auth.jwtSecret=<at least 32 random bytes>; the chart ships no default secret" -}}
{{- end -}}
{{- if and $auth.jwtSecret (eq .Values.environment "prod") -}}
{{- if hasPrefix "dev-only-" $auth.jwtSecret -}}
{{- fail "auth.jwtSecret is a development secret (dev-only-...); the services refuse it in environment=prod" -}}
{{- end -}}
{{- if lt (len $auth.jwtSecret) 32 -}}
{{- fail (printf "auth.jwtSecret has %d bytes; HS256 needs at least 32 in environment=prod (for example: openssl rand -base64 48)" (len $auth.jwtSecret)) -}}
{{- end -}}
{{- end -}}
{{- $_ := required "kafka.bootstrapServers: set your Kafka's bootstrap servers (host:port[,host:port])" .Values.kafka.bootstrapServers -}}
{{- $mongo := .Values.mongodb -}}
{{- if not $mongo.existingSecret -}}
{{- $_ := required "mongodb: set mongodb.existingSecret (a Secret holding the URI) or mongodb.uri" $mongo.uri -}}
{{- if contains "@" $mongo.uri -}}
{{- fail "mongodb.uri carries credentials (user:password@): put the URI in a Secret and set mongodb.existingSecret instead" -}}
{{- end -}}
{{- end -}}
{{- $redis := .Values.redis -}}
{{- if not $redis.existingSecret -}}
{{- $_ := required "redis: set redis.existingSecret (a Secret holding the URL) or redis.url (the gateways' shared rate limit)" $redis.url -}}
{{- if contains "@" $redis.url -}}
{{- fail "redis.url carries credentials (:password@): put the URL in a Secret and set redis.existingSecret instead" -}}
{{- end -}}
{{- if and (hasPrefix "memory:" $redis.url) (or .Values.gateway.autoscaling.enabled (gt (int .Values.gateway.replicas) 1)) -}}
{{- fail "redis.url=memory:// keeps a rate limit per gateway pod, so N pods would allow N times the limit: point redis.url at your Redis, or run one gateway (gateway.replicas=1, gateway.autoscaling.enabled=false)" -}}
{{- end -}}
{{- end -}}
{{- range $name := list "booking" "consumer" -}}
{{- $keda := (index $.Values $name).keda -}}
{{- if and $keda.enabled (gt (int $keda.maxReplicaCount) (int $.Values.kafka.topicPartitions)) -}}
{{- fail (printf "%s.keda.maxReplicaCount (%v) exceeds kafka.topicPartitions (%v): the replicas past the partitions would get no work, and each one that starts pauses the whole group for a rebalance" $name $keda.maxReplicaCount $.Values.kafka.topicPartitions) -}}
{{- end -}}
{{- end -}}
{{- $gateway := .Values.gateway -}}
{{- /* drain, then 10 s for requests in flight (shared.runner), then the lifespan's shutdown */ -}}
{{- if lt (int $gateway.terminationGracePeriodSeconds) (add (int $gateway.drainSeconds) 15) -}}
{{- fail (printf "gateway.terminationGracePeriodSeconds (%v) must be at least gateway.drainSeconds (%v) + 15: the drain, 10 s for requests in flight and the shutdown after them, or Kubernetes kills the pod mid-request" $gateway.terminationGracePeriodSeconds $gateway.drainSeconds) -}}
{{- end -}}
{{- /* the batch in hand finished and committed (shared.kafka.BATCH_FINISH_SECONDS), then 10 s for the rest of the shutdown */ -}}
{{- range $name := list "booking" "consumer" -}}
{{- $grace := (index $.Values $name).terminationGracePeriodSeconds -}}
{{- if lt (int $grace) 25 -}}
{{- fail (printf "%s.terminationGracePeriodSeconds (%v) must be at least 25: 15 s to finish and commit the batch in hand and leave the group, then 10 s for the rest of the shutdown, or Kubernetes kills the pod mid-batch and its records are handled again" $name $grace) -}}
{{- end -}}
{{- end -}}
{{- $kafka := .Values.kafka -}}
{{- if and $kafka.strimziTopics.enabled $kafka.createTopics -}}
{{- fail "kafka.strimziTopics.enabled: Strimzi's Topic Operator owns the topics, so set kafka.createTopics=false (the services then only check them)" -}}
{{- end -}}
{{- if and (eq $kafka.securityProtocol "PLAINTEXT") (eq .Values.environment "prod") (not $kafka.allowPlaintext) -}}
{{- fail "kafka.securityProtocol=PLAINTEXT in environment=prod: anyone on the network could write commands and read bookings, and the services refuse it. Set kafka.securityProtocol to SASL_SSL (with kafka.sasl.existingSecret) or SSL, or kafka.allowPlaintext=true for a listener you trust" -}}
{{- end -}}
{{- if hasPrefix "SASL_" $kafka.securityProtocol -}}
{{- range $name := list "gateway" "booking" "consumer" -}}
{{- if not (include "bookify.kafkaSaslSecret" (dict "root" $ "name" $name)) -}}
{{- fail (printf "kafka.securityProtocol=%s: %s has no login; set kafka.sasl.existingSecret (or kafka.sasl.serviceSecrets.%s) to a Secret with its username and password" $kafka.securityProtocol $name $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and (or $kafka.tls.caSecret $kafka.tls.clientSecret) (not (has $kafka.securityProtocol (list "SSL" "SASL_SSL"))) -}}
{{- fail (printf "kafka.tls is set but kafka.securityProtocol=%s does not use TLS: set it to SSL or SASL_SSL" $kafka.securityProtocol) -}}
{{- end -}}
{{- $isr := .Values.kafka.topicMinInsyncReplicas -}}
{{- if and (not (kindIs "invalid" $isr)) (gt (int $isr) (int .Values.kafka.topicReplicationFactor)) -}}
{{- fail (printf "kafka.topicMinInsyncReplicas (%v) exceeds kafka.topicReplicationFactor (%v): every acks=all send would fail" $isr .Values.kafka.topicReplicationFactor) -}}
{{- end -}}
{{- end -}}
