"""The first example: an order is processed in three checkpointed steps.

`charge_card` fails on its first try (a simulated gateway timeout) and is
retried in place; once a step is recorded it never runs again, even if the
worker dies and the run resumes elsewhere.

`ship-order` takes a while (four steps of `step_seconds` each, default 1.5), so
that you can watch its steps being recorded and kill its worker mid-run
(scripts/demo.sh does): another worker resumes it after the last recorded step.

    cairn worker examples.orders
    cairn trigger process-order --payload '{"order_id": "A-1", "amount": 42}' --wait
    cairn trigger ship-order --payload '{"order_id": "A-1"}'
"""

from __future__ import annotations

import asyncio

from worker_sdk import Retry, context, step, task

_failed_once: set[str] = set()


@step()
async def fetch_order(order_id: str, amount: float) -> dict:
    return {"id": order_id, "amount": amount, "currency": "EUR"}


@step(retry=Retry(max_attempts=3, min_timeout=0.2, max_timeout=1.0))
async def charge_card(order: dict) -> str:
    # The idempotency key is stable across retries and attempts: pass it to the
    # payment provider so a charge that is retried is never made twice.
    key = context.idempotency_key
    if key not in _failed_once:
        _failed_once.add(key)
        raise ConnectionError("payment gateway timed out (simulated, first try only)")
    return f"ch_{key.replace(':', '_')[-12:]}"


@step()
async def send_receipt(order: dict, charge_id: str) -> str:
    context.logger.info("receipt for %s sent", order["id"])
    return f"receipt for {order['id']}: {order['amount']} {order['currency']} ({charge_id})"


@task(id="process-order", retry=Retry(max_attempts=3, min_timeout=1.0))
async def process_order(payload: dict) -> dict:
    order = await fetch_order(payload["order_id"], payload.get("amount", 10))
    charge_id = await charge_card(order)
    receipt = await send_receipt(order, charge_id)
    return {"order": order["id"], "charge": charge_id, "receipt": receipt}


async def _work(what: str, order_id: str, seconds: float) -> str:
    context.logger.info("%s for order %s: running (%.1fs)", what, order_id, seconds)
    await asyncio.sleep(seconds)  # stands for real work: an API call, a query, a model
    return f"{what} done for {order_id}"


@step()
async def reserve_stock(order_id: str, seconds: float) -> str:
    return await _work("reserve stock", order_id, seconds)


@step()
async def pack_parcel(order_id: str, seconds: float) -> str:
    return await _work("pack parcel", order_id, seconds)


@step()
async def print_label(order_id: str, seconds: float) -> str:
    return await _work("print label", order_id, seconds)


@step()
async def hand_to_carrier(order_id: str, seconds: float) -> str:
    return await _work("hand to carrier", order_id, seconds)


@task(id="ship-order", retry=Retry(max_attempts=3, min_timeout=0.5))
async def ship_order(payload: dict) -> dict:
    order_id, seconds = payload["order_id"], float(payload.get("step_seconds", 1.5))
    done = [
        await reserve_stock(order_id, seconds),
        await pack_parcel(order_id, seconds),
        await print_label(order_id, seconds),
        await hand_to_carrier(order_id, seconds),
    ]
    return {"order": order_id, "shipped": True, "steps": done}
