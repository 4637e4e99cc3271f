# The legacy backends for docker/compose.yaml and docker/k8s-pod.yaml: Debian 12's own Postfix
# and Dovecot, unmodified packages, configured only to listen on loopback (moat is their only way
# in), to trust moat's XCLIENT / ID from 127.0.0.1, and to offer what docker/moat.conf's backends
# expect: SMTP on 25, submission on 587 (SMTP AUTH through Dovecot), IMAP on 143, POP3 on 110.
# Mail for example.org goes to the system users' mailboxes in /var/mail.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      postfix dovecot-imapd dovecot-pop3d \
 && rm -rf /var/lib/apt/lists/* \
 && cp /usr/share/postfix/main.cf.debian /etc/postfix/main.cf \
 && postconf -e inet_interfaces=loopback-only inet_protocols=ipv4 \
      smtpd_authorized_xclient_hosts=127.0.0.1 \
      mydestination=example.org,localhost maillog_file=/dev/stdout \
 && { [ -e /etc/aliases ] || echo 'postmaster: root' > /etc/aliases; } && newaliases \
 && postconf -M submission/inet="submission inet n - n - - smtpd" \
 && postconf -P submission/inet/syslog_name=postfix/submission \
      submission/inet/smtpd_tls_security_level=none \
      submission/inet/smtpd_sasl_auth_enable=yes \
      submission/inet/smtpd_sasl_type=dovecot \
      submission/inet/smtpd_sasl_path=private/auth \
      submission/inet/smtpd_relay_restrictions=permit_sasl_authenticated,reject \
 && printf '%s\n' 'listen = 127.0.0.1' 'login_trusted_networks = 127.0.0.1' 'ssl = no' \
      'disable_plaintext_auth = no' 'auth_mechanisms = plain login' \
      'service auth {' '  unix_listener /var/spool/postfix/private/auth {' \
      '    mode = 0660' '    user = postfix' '    group = postfix' '  }' '}' \
      > /etc/dovecot/conf.d/99-behind-moat.conf
CMD ["sh", "-c", "dovecot && exec postfix start-fg"]
