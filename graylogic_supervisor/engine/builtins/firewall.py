"""``check_firewall``: would the host's firewall let a new connection to a port in?

Read-only: it runs ``nft -j list ruleset`` (or ``iptables-save`` where nft is
missing) as an argument list, never through a shell, and reads the verdict for
a new inbound connection to ``port`` (from ``source``, if given) off the input
hook's chains, rule by rule, then the chain's policy. A rule with a match this
reader does not know (interface, connection state, sets, jumps) is passed over
and counted in the output, so the answer says what it could not weigh.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from graylogic_supervisor.domain.actions import ActionKind
from graylogic_supervisor.engine.action import ActionParams, StepContext, StepResult
from graylogic_supervisor.errors import ServiceError
from graylogic_supervisor.services.systemd import CommandRunner

NFT_ARGV = ("nft", "-j", "list", "ruleset")
IPTABLES_ARGV = ("iptables-save",)
ACCEPT, DROP = "accept", "drop"


class FirewallParams(ActionParams):
    port: int = Field(ge=1, le=65535)
    protocol: Literal["tcp", "udp"] = "tcp"
    source: str | None = Field(None, description="the client's address; default any")
    expect: Literal["allowed", "dropped"] = "allowed"


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    decided_by: str  # "rule <handle> in <chain>", "policy of <chain>", "no input chain"
    skipped: int  # rules passed over because they hold a match not understood


@dataclass(frozen=True)
class Probe:
    port: int
    protocol: str
    source: ipaddress.IPv4Address | ipaddress.IPv6Address | None


def _in_network(source: Probe, value: object) -> bool | None:
    """Does the probe's source lie in ``value`` (an address, or nft's prefix object)?"""
    if source.source is None:
        return None
    if isinstance(value, Mapping) and "prefix" in value:
        prefix = value["prefix"]
        network = ipaddress.ip_network(f"{prefix['addr']}/{prefix['len']}", strict=False)
    elif isinstance(value, str):
        network = ipaddress.ip_network(value, strict=False)
    else:
        return None
    return source.source in network


def _nft_match(probe: Probe, match: Mapping[str, Any]) -> bool | None:
    """True or False when this reader can tell; None when it cannot."""
    left, right, op = match.get("left"), match.get("right"), match.get("op", "==")
    if not isinstance(left, Mapping):
        return None
    verdict: bool | None = None
    if "payload" in left:
        field, protocol = left["payload"].get("field"), left["payload"].get("protocol")
        if field == "dport" and protocol in ("tcp", "udp", "th"):
            if protocol != "th" and protocol != probe.protocol:
                verdict = False
            elif isinstance(right, int):
                verdict = right == probe.port
            elif isinstance(right, Mapping) and "set" in right:
                ports = [p for p in right["set"] if isinstance(p, int)]
                ranges = [
                    p["range"] for p in right["set"] if isinstance(p, Mapping) and "range" in p
                ]
                verdict = probe.port in ports or any(lo <= probe.port <= hi for lo, hi in ranges)
            elif isinstance(right, Mapping) and "range" in right:
                lo, hi = right["range"]
                verdict = lo <= probe.port <= hi
        elif field == "saddr" and protocol in ("ip", "ip6"):
            verdict = _in_network(probe, right)
    elif "meta" in left and left["meta"].get("key") == "l4proto" and isinstance(right, str):
        verdict = right == probe.protocol
    if verdict is None or op == "==":
        return verdict
    if op == "!=":
        return not verdict
    return None


def _nft_rule(probe: Probe, expressions: Sequence[Mapping[str, Any]]) -> str | bool | None:
    """The rule's verdict when it applies; None when it does not; False when this reader
    cannot tell (a match it does not know, where none of the others rules it out)."""
    unknown = False
    for expression in expressions:
        if "match" in expression:
            applies = _nft_match(probe, expression["match"])
            if applies is False:
                return None
            unknown = unknown or applies is None
        elif "counter" in expression or "log" in expression or "comment" in expression:
            continue
        elif unknown:
            return False
        elif "accept" in expression:
            return ACCEPT
        elif "drop" in expression or "reject" in expression:
            return DROP
        else:
            return False  # jump, goto, sets, limits, nat...: not weighed here
    return None


def nft_verdict(ruleset: Mapping[str, Any], probe: Probe) -> Verdict:
    """The input hook's answer in ``nft -j list ruleset`` output, base chains by priority."""
    items = ruleset.get("nftables", [])
    families = ("inet", "ip6") if probe.source and probe.source.version == 6 else ("inet", "ip")
    chains = [
        item["chain"]
        for item in items
        if "chain" in item
        and item["chain"].get("hook") == "input"
        and item["chain"].get("family") in families
    ]
    chains.sort(key=lambda c: c.get("prio", 0))
    skipped = 0
    for chain in chains:
        key = (chain["family"], chain["table"], chain["name"])
        rules = [
            item["rule"]
            for item in items
            if "rule" in item
            and (item["rule"]["family"], item["rule"]["table"], item["rule"]["chain"]) == key
        ]
        where = f"{chain['family']} {chain['table']} {chain['name']}"
        decided = False
        for rule in rules:
            verdict = _nft_rule(probe, rule.get("expr", []))
            if verdict is False:
                skipped += 1
            elif verdict == DROP:
                return Verdict(False, f"rule {rule.get('handle')} in {where}", skipped)
            elif verdict == ACCEPT:
                decided = True  # accepted here; a later base chain may still drop it
                break
        if not decided and chain.get("policy", ACCEPT) == DROP:
            return Verdict(False, f"policy of {where}", skipped)
    if not chains:
        return Verdict(True, "no input chain", skipped)
    return Verdict(True, f"{len(chains)} input chains", skipped)


def _iptables_rule(probe: Probe, words: Sequence[str]) -> str | bool | None:
    """One ``-A INPUT …`` line's verdict (as ``_nft_rule``)."""
    target: str | None = None
    protocol: str | None = None
    unknown = False
    index = 2
    while index < len(words):
        word = words[index]
        value = words[index + 1] if index + 1 < len(words) else ""
        if word == "!":  # a negated match: not weighed here
            unknown = True
            index += 1
            continue
        if word in ("-p", "--protocol"):
            protocol = value
            if value != probe.protocol:
                return None
        elif word in ("--dport", "--destination-port"):
            low, _, high = value.partition(":")
            if protocol is None or not (int(low) <= probe.port <= int(high or low)):
                return None
        elif word in ("-s", "--source"):
            inside = _in_network(probe, value)
            if inside is False:
                return None
            unknown = unknown or inside is None
        elif (word == "-m" and value in ("tcp", "udp", "comment")) or word == "--comment":
            pass
        elif word in ("-j", "--jump"):
            target = value
        else:
            unknown = True  # -i, -m conntrack, --ctstate, ...: not weighed here
        index += 2
    if unknown:
        return False
    if target == "ACCEPT":
        return ACCEPT
    if target in ("DROP", "REJECT"):
        return DROP
    return False


def iptables_verdict(text: str, probe: Probe) -> Verdict:
    """The filter table's INPUT chain in ``iptables-save`` output."""
    policy, table, skipped = ACCEPT, None, 0
    for line in text.splitlines():
        try:
            words = shlex.split(line, comments=False)
        except ValueError:
            words = line.split()
        if not words:
            continue
        if words[0].startswith("*"):
            table = words[0][1:]
        elif table != "filter":
            continue
        elif words[0] == ":INPUT" and len(words) > 1:
            policy = DROP if words[1] == "DROP" else ACCEPT
        elif words[:2] == ["-A", "INPUT"]:
            verdict = _iptables_rule(probe, words)
            if verdict is False:
                skipped += 1
            elif verdict == DROP:
                return Verdict(False, f"rule '{line.strip()}'", skipped)
            elif verdict == ACCEPT:
                return Verdict(True, f"rule '{line.strip()}'", skipped)
    return Verdict(policy == ACCEPT, "policy of filter INPUT", skipped)


class CheckFirewall:
    name: ClassVar[str] = "check_firewall"
    kind: ClassVar[ActionKind] = ActionKind.CHECK
    params_model: ClassVar[type[BaseModel]] = FirewallParams
    needs_target: ClassVar[bool] = False

    def __init__(self, runner: CommandRunner) -> None:
        self._runner = runner

    async def run(self, ctx: StepContext) -> StepResult:
        params = ctx.params
        assert isinstance(params, FirewallParams)
        try:
            source = ipaddress.ip_address(params.source) if params.source else None
        except ValueError:
            return StepResult.failed(f"source {params.source!r} is not an IP address")
        probe = Probe(params.port, params.protocol, source)
        argv = NFT_ARGV if shutil.which("nft") else IPTABLES_ARGV
        timeout = max(0.1, ctx.deadline - ctx.clock.monotonic())
        try:
            result = await self._runner(argv, timeout)
        except ServiceError as exc:
            return StepResult.failed(f"cannot read the firewall: {exc}")
        if result.returncode != 0:
            return StepResult.failed(
                f"`{' '.join(argv)}` exited {result.returncode}: {result.stderr.strip()[:200]}"
            )
        try:
            verdict = (
                nft_verdict(json.loads(result.stdout), probe)
                if argv == NFT_ARGV
                else iptables_verdict(result.stdout, probe)
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return StepResult.failed(f"unreadable `{' '.join(argv)}` output: {exc}")
        state = "allowed" if verdict.allowed else "dropped"
        who = f" from {source}" if source else ""
        summary = f"{params.protocol}/{params.port}{who} {state} ({verdict.decided_by})"
        if verdict.skipped:
            summary += f"; {verdict.skipped} rules not weighed"
        output = {
            "state": state,
            "decided_by": verdict.decided_by,
            "rules_not_weighed": verdict.skipped,
            "command": " ".join(argv),
        }
        if state == params.expect:
            return StepResult.ok(summary, **output)
        return StepResult.failed(f"{summary}, expected {params.expect}", **output)
