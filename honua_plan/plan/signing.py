"""SSH signatures of approvals, the convention git uses for signed commits.

``honua approve --key KEY`` signs :func:`approval_message` (the plan's digest, the
approver and the time) with ``ssh-keygen -Y sign -n honua-plan``; apply verifies it with
``ssh-keygen -Y verify`` against an ``allowed_signers`` file kept in the repository, so
an approval cannot be written into a plan file by someone who does not hold a key the
repository trusts for that approver.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from honua_plan.errors import PlanError, PolicyError

NAMESPACE = "honua-plan"
KEY_ENV = "HONUA_SIGNING_KEY"

__all__ = ["KEY_ENV", "NAMESPACE", "approval_message", "sign", "verify"]


def approval_message(digest: str, by: str, at: datetime) -> bytes:
    """The signed text: binds the reviewed content, the approver and the time."""
    when = (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    return f"honua-plan approval v1\ndigest {digest}\nby {by}\nat {when}\n".encode()


def _ssh_keygen() -> str:
    exe = shutil.which("ssh-keygen")
    if exe is None:
        raise PlanError("ssh-keygen is not installed: signed approvals need OpenSSH 8.2 or later",
                        hint="install openssh-client")
    return exe


def sign(message: bytes, key: Path) -> str:
    """The armored SSH signature of ``message`` by the private key ``key`` (or its agent-held public half)."""
    if not key.is_file():
        raise PlanError(f"signing key {key} not found")
    try:
        out = subprocess.run([_ssh_keygen(), "-Y", "sign", "-f", str(key), "-n", NAMESPACE],
                             input=message, capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise PlanError(f"cannot sign with {key}: {exc}") from None
    text = out.stdout.decode("utf-8", "replace")
    if out.returncode != 0 or "BEGIN SSH SIGNATURE" not in text:
        why = out.stderr.decode("utf-8", "replace").strip().splitlines()
        raise PlanError(f"cannot sign with {key}: {why[-1] if why else 'ssh-keygen failed'}")
    return text


def verify(message: bytes, signature: str, *, signer: str, allowed_signers: Path) -> None:
    """Raise :class:`PolicyError` unless ``signature`` is ``signer``'s (per ``allowed_signers``) over ``message``."""
    if not allowed_signers.is_file():
        raise PolicyError(f"cannot verify the signature of {signer}: {allowed_signers} not found",
                          hint="keep the approvers' public keys in the allowed_signers file the policy names")
    fd, sig_path = tempfile.mkstemp(prefix="honua-approval-", suffix=".sig")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(signature)
        out = subprocess.run(
            [_ssh_keygen(), "-Y", "verify", "-f", str(allowed_signers), "-I", signer, "-n", NAMESPACE,
             "-s", sig_path],
            input=message, capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise PolicyError(f"cannot verify the signature of {signer}: {exc}") from None
    finally:
        os.unlink(sig_path)
    if out.returncode != 0:
        why = out.stderr.decode("utf-8", "replace").strip().splitlines()
        raise PolicyError(
            f"the signature of the approval by {signer} does not verify against {allowed_signers.name} "
            f"({why[-1] if why else 'ssh-keygen -Y verify failed'})",
            hint="the approval was not signed by a key allowed for this approver, or not for this plan",
        )
