-- wrk script: POST /heartbeat from 10 000 simulated nodes, with the Go agent's JSON fields and a
-- bearer token (TOKEN env var). Each wrk thread cycles through the nodes in order, so every node
-- beats at a steady cadence, as real agents do (random picks would give bursty per-node gaps).
local token = os.getenv("TOKEN")
local nodes = 10000
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. token
local counter = 0
request = function()
  counter = counter + 1
  local n = counter % nodes
  local body = string.format(
    '{"node":"worker-%d","ip":"10.1.%d.%d","os":"linux","arch":"amd64","cpus":4,"cpu_usage_percent":12.5,' ..
    '"mem_total_bytes":8348520448,"mem_used_bytes":2147483648,"ts":"2026-11-22T00:00:00Z",' ..
    '"cluster_name":"cluster1-azure","cluster_namespace":"default","machine":"m-%d","owner_kind":"MachineSet",' ..
    '"owner_name":"md-0","provided_node_ip":"10.1.0.4","cri_socket":"unix:///run/containerd/containerd.sock"}',
    n, n % 250, n % 200, n)
  return wrk.format(nil, nil, nil, body)
end
