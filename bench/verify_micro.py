"""What ``TokenVerifier.verify`` costs per call, without MQTT around it; prints one JSON line.

    python bench/verify_micro.py KEY.pem [--repeats 100000] [--fresh 2000] [--nanoidp 30]

- repeat: one token verified once, then ``repeats`` more times (the verified-token cache's answer:
  ``bearer_token`` parsing, a dictionary lookup, the expiry check); the loop's time / ``repeats``.
- first-time RS256: ``fresh`` distinct tokens from ``bench/issuer.py``'s key, each timed alone (header
  parse, RSA-2048 signature check, claims validation, ``UserContext``, the cache insert).
- the same first-time figure for ``nanoidp`` tokens minted by the real dev identity provider (its key
  set discovered over HTTP once, before timing), to show the bench issuer's tokens cost the same; left
  out, with the reason, when nanoidp is not installed.

All tokens are signed before the clock starts; the clock is ``time.perf_counter``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from issuer import AUDIENCE, EMAIL_CLAIM, ISSUER, BenchIssuer

from dormant_auth import ClaimNames, IssuerConfig, TokenVerifier


def _micros(samples_s: list[float]) -> dict[str, float]:
    ordered = sorted(samples_s)
    return {
        "p50_us": round(ordered[len(ordered) // 2] * 1e6, 1),
        "p99_us": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e6, 1),
        "mean_us": round(sum(ordered) / len(ordered) * 1e6, 1),
        "n": len(ordered),
    }


async def _first_time(verifier: TokenVerifier, tokens: list[str]) -> dict[str, float]:
    samples = []
    for token in tokens:
        authorization = f"Bearer {token}"
        start = time.perf_counter()
        await verifier.verify(authorization)
        samples.append(time.perf_counter() - start)
    return _micros(samples)


async def bench_issuer_figures(key_file: Path, repeats: int, fresh: int) -> dict[str, Any]:
    issuer = BenchIssuer.load(key_file)
    config = IssuerConfig(
        issuer=ISSUER, audience=AUDIENCE, jwks=json.dumps(issuer.jwks()), claims=ClaimNames(email=EMAIL_CLAIM)
    )
    verifier = TokenVerifier(config)
    try:
        authorization = f"Bearer {issuer.token()}"
        await verifier.verify(authorization)  # the one full verification; every later one is a repeat
        start = time.perf_counter()
        for _ in range(repeats):
            await verifier.verify(authorization)
        repeat_us = (time.perf_counter() - start) / repeats * 1e6
        first_time = await _first_time(verifier, issuer.tokens(fresh))
    finally:
        await verifier.close()
    return {"repeat_us": round(repeat_us, 2), "repeats": repeats, "first_time_rs256": first_time}


async def nanoidp_figures(count: int) -> dict[str, Any]:
    """First-time verification of tokens the real provider minted (RS256, its own 2048-bit key)."""
    from dormant_local.oidc import OidcProvider, OidcProviderNotInstalled

    with tempfile.TemporaryDirectory(prefix="dormant-bench-idp-") as state:
        provider = OidcProvider(Path(state) / "idp")
        try:
            await provider.start()
        except OidcProviderNotInstalled as exc:
            return {"skipped": str(exc)}
        try:
            # One user, one token each: token() remakes the user, so these are ~3 requests apiece.
            tokens = [await provider.token("bencher", ("bench",)) for _ in range(count + 1)]
            env = provider.service_env()
            config = IssuerConfig.from_env(env)
            assert config is not None
            verifier = TokenVerifier(config)
            try:
                await verifier.verify(f"Bearer {tokens[0]}")  # discovery and the key set, untimed
                return {"first_time_rs256": await _first_time(verifier, tokens[1:])}
            finally:
                await verifier.close()
        finally:
            await provider.stop()


async def main(argv: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="bench/verify_micro.py", description=__doc__)
    parser.add_argument("key", type=Path)
    parser.add_argument("--repeats", type=int, default=100_000)
    parser.add_argument("--fresh", type=int, default=2_000)
    parser.add_argument("--nanoidp", type=int, default=30, help="tokens to mint at nanoidp; 0: none")
    args = parser.parse_args(argv)
    result = await bench_issuer_figures(args.key, args.repeats, args.fresh)
    if args.nanoidp > 0:
        result["nanoidp"] = await nanoidp_figures(args.nanoidp)
    return result


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1:]))), flush=True)
