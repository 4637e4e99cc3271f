# The legacy backends for docker/compose.yaml: Debian 12's own Postfix and Dovecot, unmodified
# packages, configured only to listen on loopback (moat is their only way in) and to trust
# moat's XCLIENT / ID from 127.0.0.1.
FROM debian:bookworm-slim
RUN echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      postfix dovecot-imapd dovecot-pop3d \
 && rm -rf /var/lib/apt/lists/* \
 && cp /usr/share/postfix/main.cf.debian /etc/postfix/main.cf \
 && postconf -e inet_interfaces=loopback-only smtpd_authorized_xclient_hosts=127.0.0.1 \
      mydestination=example.org,localhost maillog_file=/dev/stdout \
 && printf 'listen = 127.0.0.1\nlogin_trusted_networks = 127.0.0.1\nssl = no\ndisable_plaintext_auth = no\n' \
      > /etc/dovecot/conf.d/99-behind-moat.conf
CMD ["sh", "-c", "dovecot && exec postfix start-fg"]
