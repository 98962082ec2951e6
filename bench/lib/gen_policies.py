#!/usr/bin/env python3
"""Writes N synthetic Cedar policies for the authorization-cost scenarios of bench/run.sh.

    gen_policies.py N OUT.cedar

They look like the policies of a large site: one or two per device, workload or team, each
naming its own principal and its own route or service, with `when` conditions on the
principal, the TLS facts, the time and the headers. Four shapes, in turn:

  0  permit  one device  -> read  one route       when principal.site == context.site
  1  permit  one group   -> write one service     when context.tls.mtls
  2  forbid  one workload -> any  one route       unless context.time.hour < 24
  3  permit  any device  -> GET   one route       when principal.name == ... && a header

None of them names the bench's route (`bench`) or its service, so a request to the bench route
is decided by the bench's own permit; an authorizer that evaluates every policy pays for all N,
one that indexes the set (by action and route) pays for none of them.
"""
import sys

TD = "acme.example"


def policy(i: int) -> str:
    shape = i % 4
    if shape == 0:
        return (
            f'@id("gen-{i}")\n'
            f'permit (\n  principal == Edgeward::Device::"spiffe://{TD}/site/berlin/device/gen-{i}",\n'
            f'  action in Edgeward::Action::"read",\n  resource == Edgeward::Route::"r-{i}"\n)\n'
            f"when {{ principal.site == context.site }};\n"
        )
    if shape == 1:
        return (
            f'@id("gen-{i}")\n'
            f'permit (\n  principal in Edgeward::Group::"team-{i}",\n'
            f'  action in Edgeward::Action::"write",\n  resource in Edgeward::Service::"svc-{i}"\n)\n'
            f"when {{ context.tls.mtls }};\n"
        )
    if shape == 2:
        return (
            f'@id("gen-{i}")\n'
            f'forbid (\n  principal == Edgeward::Workload::"spiffe://{TD}/site/berlin/service/gen-{i}",\n'
            f'  action,\n  resource == Edgeward::Route::"r-{i}"\n)\n'
            f"unless {{ context.time.hour < 24 }};\n"
        )
    return (
        f'@id("gen-{i}")\n'
        f"permit (\n  principal is Edgeward::Device,\n"
        f'  action == Edgeward::Action::"GET",\n  resource == Edgeward::Route::"r-{i}"\n)\n'
        f'when {{ principal.name == "gen-{i}" && context.headers.contains({{ name: "x-tenant", value: "t-{i}" }}) }};\n'
    )


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    n = int(sys.argv[1])
    with open(sys.argv[2], "w") as f:
        f.write(f"// {n} synthetic policies written by bench/lib/gen_policies.py\n\n")
        for i in range(n):
            f.write(policy(i))
            f.write("\n")


if __name__ == "__main__":
    main()
