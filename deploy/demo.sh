#!/usr/bin/env sh
# Seeds the compose demo through the admin API: the mock upstream as a provider, a priced model, a team and a
# key; then sends one chat completion through each node. Needs curl and jq on the host.
set -eu
cd "$(dirname "$0")"
CP=${CP:-http://127.0.0.1:8081}
TOKEN=$(cat secrets/operator_token)
api() { curl -fsS -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' "$@"; }

provider=$(api "$CP/api/v1/providers" -d '{"name":"mock","kind":"openai_compatible","base_url":"http://mock-provider:9000/v1","api_key":"mock-upstream-credential"}' | jq -r .id)
api "$CP/api/v1/models" -d "{\"name\":\"demo-model\",\"input_price_per_mtok\":500000,\"output_price_per_mtok\":1500000,\"targets\":[{\"provider_id\":$provider,\"upstream_model\":\"mock-model\"}]}" >/dev/null
team=$(api "$CP/api/v1/teams" -d '{"name":"Demo"}' | jq -r .id)
key=$(api "$CP/api/v1/teams/$team/keys" -d '{"name":"demo"}' | jq -r .key)
echo "API key (shown once): $key"
sleep 1  # the nodes' long-polls deliver the new snapshot within milliseconds
for port in 8080 8082; do
  curl -fsS "http://127.0.0.1:$port/v1/chat/completions" -H "Authorization: Bearer $key" \
    -H 'Content-Type: application/json' \
    -d '{"model":"demo-model","messages":[{"role":"user","content":"hello"}]}' | jq -c '{node: '"$port"', usage}'
done
echo "Dashboards: http://127.0.0.1:3000  Prometheus: http://127.0.0.1:9090  Console: $CP/console"
