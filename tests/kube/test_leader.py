"""Lease-based leader election (webterm.manager.kube.leader) against the stand-in,
through the real client: one leader at a time, takeover after a release, and a
leader that cannot renew steps down."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import trio

from tests.credentials import CREDENTIAL
from tests.kube.test_kube_backend import SUITE_REALISM
from tests.kubeapi import LEASES, MANAGER_ROLE_RULES, KubeletConfig, run_kube_api
from webterm.config import ManagerConfig
from webterm.manager.kube.client import KubeClient, load_connection
from webterm.manager.kube.leader import LeaderConfig, LeaderElector, LeadershipLost


def elector(client: KubeClient, identity: str) -> LeaderElector:
    return LeaderElector(
        client,
        LeaderConfig(
            lease_name="webterm-manager", identity=identity,
            lease_duration=2.0, renew_deadline=1.5, retry_period=0.2,
        ),
    )  # fmt: skip


async def lead_in(
    scope: trio.CancelScope,
    candidate: LeaderElector,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    with scope:
        await candidate.run(task_status=task_status)


async def test_one_leader_release_hands_over_and_a_lost_renewal_steps_down(
    tmp_path: Path,
) -> None:
    async with run_kube_api(
        tmp_path, kubelet=KubeletConfig(mode="fake"), rbac=MANAGER_ROLE_RULES, realism=SUITE_REALISM
    ) as api:
        config = ManagerConfig(
            secret=api.secret, signing_key=api.signing_key, webserver_credential=CREDENTIAL,
            kubeconfig=str(api.kubeconfig),
        )  # fmt: skip
        client = KubeClient(load_connection(config))
        a, b = elector(client, "a"), elector(client, "b")
        stepped_down = False
        try:
            async with trio.open_nursery() as nursery:
                a_scope = trio.CancelScope()
                await nursery.start(partial(lead_in, a_scope, a))
                nursery.start_soon(partial(lead_in, trio.CancelScope(), b))
                await trio.sleep(3)  # longer than the lease: a renews, b stays a follower
                assert a.leading
                assert not b.leading
                assert api.get(LEASES, "webterm-manager")["spec"]["holderIdentity"] == "a"
                a_scope.cancel()  # a clean stop: the lease is released
                with trio.fail_after(2):  # a few retry periods, not a lease duration
                    while not b.leading:
                        await trio.sleep(0.05)
                lease = api.get(LEASES, "webterm-manager")["spec"]
                assert lease["holderIdentity"] == "b"
                assert lease["leaseTransitions"] == 1
                api.faults.go_down()  # b cannot renew: it must step down by itself
                with trio.fail_after(5):
                    await trio.sleep_forever()
        except* LeadershipLost:
            stepped_down = True
        finally:
            await client.aclose()
        assert stepped_down
        assert not b.leading
