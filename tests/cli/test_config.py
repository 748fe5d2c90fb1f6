"""The config file: defaults for address, framing and token file; flags override; `netlab config show`."""

from __future__ import annotations

import tempfile
from pathlib import Path

from netlab.testing import ChildServer, listen_url, run_netlab


def _config(directory: Path, text: str) -> dict[str, str]:
    path = directory / "config.toml"
    path.write_text(text)
    return {"NETLAB_CONFIG": str(path)}


def test_the_config_file_sets_address_and_framing_and_flags_override(tmp_path: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="nl-") as directory:
        url = listen_url("unix", directory)
        environment = _config(tmp_path, f'address = "{url}"\nframing = "line"\n')
        with ChildServer("--address", url, "--framing", "line", "--quiet"):
            result = run_netlab("exec", "--", "echo", "hi", environment=environment)
            assert (result.returncode, result.stdout) == (0, b"hi\n"), result.stderr
            # a flag beats the file: --framing length against a line server is a framing mismatch, not "hi"
            result = run_netlab("exec", "--framing", "length", "--", "echo", "hi", environment=environment)
            assert result.returncode == 255 and result.stdout == b""
            # --transport beats the file's address: nothing listens on the default tcp4 port here
            result = run_netlab("exec", "--transport", "tcp4", "-p", "9", "--connect-timeout", "1", "--", "echo",
                                environment=environment)
            assert result.returncode == 255 and "127.0.0.1:9" in result.stderr.decode()
    shown = run_netlab("config", "show", environment=environment).stdout.decode().splitlines()
    assert shown[0] == f"config file: {tmp_path / 'config.toml'} (from $NETLAB_CONFIG)"
    assert f"address = {url}  (config file)" in shown and "framing = line  (config file)" in shown
    assert "token_file = none ($NETLAB_TOKEN if set)  (default)" in shown


def test_without_a_file_config_show_says_so(tmp_path: Path) -> None:
    shown = run_netlab("config", "show", environment={"XDG_CONFIG_HOME": str(tmp_path)}).stdout.decode()
    assert shown.startswith(f"config file: none ({tmp_path}/netlab/config.toml does not exist)")
    assert "framing = length  (default)" in shown


def test_a_broken_config_file_is_one_line(tmp_path: Path) -> None:
    result = run_netlab("serve", environment=_config(tmp_path, 'adress = "tcp4://127.0.0.1:1"\n'))
    assert result.returncode == 2
    assert result.stderr.decode() == (f"netlab: {tmp_path}/config.toml: unknown key 'adress' (did you mean "
                                      "'address'?); allowed: address, framing, token_file\n")
    result = run_netlab("exec", "--", "echo", environment=_config(tmp_path, "framing = \n"))
    assert result.returncode == 255 and "not valid TOML" in result.stderr.decode()
    result = run_netlab("shell", environment={"NETLAB_CONFIG": str(tmp_path / "missing.toml")})
    assert result.returncode == 2 and "missing.toml: no such file (named by $NETLAB_CONFIG)" in result.stderr.decode()


def test_the_token_file_comes_from_the_config_and_is_read(tmp_path: Path) -> None:
    token = tmp_path / "token"
    created = run_netlab("token", "new", str(token))
    assert created.returncode == 0, created.stderr
    environment = _config(tmp_path, 'token_file = "~/token"\n') | {"HOME": str(tmp_path)}
    shown = run_netlab("config", "show", environment=environment).stdout.decode()
    assert f"token_file = {token}  (config file)" in shown
    with tempfile.TemporaryDirectory(prefix="nl-") as directory:
        url = listen_url("unix", directory)
        with ChildServer("--address", url, "--token-file", str(token), "--quiet"):
            result = run_netlab("exec", "--address", url, "--", "echo", "ok", environment=environment)
            assert (result.returncode, result.stdout) == (0, b"ok\n"), result.stderr
            result = run_netlab("exec", "--address", url, "--", "echo", "ok")  # no token: refused
            assert result.returncode == 255
