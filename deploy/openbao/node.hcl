# One node of Haven's OpenBao raft cluster (three nodes; initialize once with 5 shares, threshold 3).
# Copy per node and change node_id, the addresses and the retry_join targets.
storage "raft" {
  path    = "/var/lib/openbao/raft"
  node_id = "bao1"
  retry_join { leader_api_addr = "https://bao2.example.com:8200" }
  retry_join { leader_api_addr = "https://bao3.example.com:8200" }
}
listener "tcp" {
  address         = "0.0.0.0:8200"
  cluster_address = "0.0.0.0:8201"
  tls_cert_file   = "/etc/openbao/tls/node.pem"
  tls_key_file    = "/etc/openbao/tls/node-key.pem"
}
# Every request, in a file the operators ship to their log store (OpenBao declares audit devices here).
audit "file" "haven" {
  options { file_path = "/var/log/openbao/audit.log" }
}
api_addr      = "https://bao1.example.com:8200"
cluster_addr  = "https://bao1.example.com:8201"
disable_mlock = false
ui            = false
