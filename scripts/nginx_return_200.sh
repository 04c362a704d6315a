#!/usr/bin/env bash
# The benches' reference receiver: nginx answering every request with 200 (keep-alive, no
# access log: as cheap as a receiver gets), on 127.0.0.1, in the foreground, with every file
# of its own under DIR. With TLS_PORT, also over TLS there with the certificate CERT and key KEY.
#
# Usage: bash scripts/nginx_return_200.sh DIR PORT [TLS_PORT CERT KEY] (run it in the background;
# it prints nothing once started, and its errors go to DIR/nginx.err).
set -euo pipefail
dir=$1 port=$2 tls_port=${3:-} cert=${4:-} key=${5:-}
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
user_line=
[ "$(id -u)" -eq 0 ] && user_line="user root;"
tls=
[ -n "$tls_port" ] && tls="listen 127.0.0.1:$tls_port ssl; ssl_certificate $cert; ssl_certificate_key $key;"
mkdir -p "$dir/nginx"
cat >"$dir/nginx.conf" <<CONF
$user_line
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/nginx.err warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000000;
  keepalive_timeout 300s;
  client_body_buffer_size 64k;
  client_max_body_size 16m;
  client_body_temp_path $dir/nginx/body;
  proxy_temp_path $dir/nginx/proxy;
  fastcgi_temp_path $dir/nginx/fastcgi;
  uwsgi_temp_path $dir/nginx/uwsgi;
  scgi_temp_path $dir/nginx/scgi;
  server {
    listen 127.0.0.1:$port;
    $tls
    location / { return 200; }
  }
}
CONF
exec "$nginx_bin" -c "$dir/nginx.conf" -p "$dir/nginx"
