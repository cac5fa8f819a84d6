"""What the agent leaves in the journal under systemd: its sd-daemon priority prefixes become journald
priorities (a failed refresh is a warning or worse, routine lines are info), and no secret of any kind reaches
the journal, whatever the agent did: IMDS, ECS, the fast path, status, failing and succeeding refreshes,
reload and stop, at debug level."""

from radtest.clients import ecs_credentials, http_call, imds_credentials, imds_token

from conftest import SERVICE, SOCKETS, TOKEN_FILE


def test_priorities(service, em):
    # Every CreateSession refused (403: not retryable soon, so one attempt).
    em.faults({"status": 403, "count": 20})
    cursor = service.cursor()
    service.start()
    service.wait_for_journal(r"event=refresh_failed\b", after=cursor)

    warnings = service.journal("-p", "warning", after=cursor)
    assert "event=refresh_failed" in warnings, warnings
    assert "event=started" not in warnings, warnings
    assert "event=started" in service.journal(after=cursor)
    for entry in service.journal_entries(after=cursor):
        message = entry["MESSAGE"]
        if not isinstance(message, str) or "event=" not in message:
            continue
        # journald took the <N> prefix as the priority and stripped it from the message.
        assert not message.startswith("<"), message
        if "event=refresh_failed" in message:
            assert entry["PRIORITY"] in ("3", "4"), entry
        if "event=started" in message:
            assert entry["PRIORITY"] == "6", entry
    status = service.show("StatusText")["StatusText"]
    assert status.startswith("0/1 profiles"), status


def test_no_secret_in_the_journal(service, machine, em, issued_so_far):
    service.configure(agent={"log_level": "debug"})
    # One refused attempt first (503, retried), then credentials: the failure path at debug level too.
    em.faults({"status": 503})
    service.start()
    service.wait_serving()

    tokens = [imds_token(service.ports["imds"])]
    status, _ = imds_credentials(service.ports["imds"], tokens[0])
    assert status == 200
    ecs_token = machine.read(TOKEN_FILE).strip()
    tokens.append(ecs_token)
    status, _ = ecs_credentials(f"http://127.0.0.1:{service.ports['ecs']}/credentials/web", ecs_token)
    assert status == 200
    machine.run("rolesanywhere-agent", "credential-process", "--profile", "web", "--no-fallback")
    machine.run("rolesanywhere-agent", "status")
    # Refused requests that carry the tokens (wrong path, one byte off) must not echo them into the log.
    http_call(service.ports["imds"], "GET", "/latest/meta-data/nope", {"X-aws-ec2-metadata-token": tokens[0]})
    http_call(service.ports["ecs"], "GET", "/credentials/nope", {"Authorization": ecs_token})
    http_call(service.ports["ecs"], "GET", "/credentials/web", {"Authorization": ecs_token[:-1] + "x"})
    # A reload and a full stop, with their own log lines.
    service.systemctl("reload", SERVICE)
    service.systemctl("stop", SERVICE, *SOCKETS)

    issued = issued_so_far + em.issued()
    assert issued, "nothing was issued"
    secrets = {value for credentials in issued
               for value in (credentials["secretAccessKey"], credentials["sessionToken"], credentials["accessKeyId"])}
    secrets.update(tokens)
    export = machine.run("journalctl", "--no-pager", "-o", "export").stdout
    assert "event=started" in export and "event=refresh_ok" in export, "the journal holds none of the agent's lines"
    found = sorted(s[:8] + "…" for s in secrets if s in export)
    assert found == [], f"secrets in the journal: {found}"
    assert "PRIVATE KEY" not in export
