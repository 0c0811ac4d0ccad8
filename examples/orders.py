"""The first example: an order is processed in three checkpointed steps.

`charge_card` fails on its first try (a simulated gateway timeout) and is
retried in place; once a step is recorded it never runs again, even if the
worker dies and the run resumes elsewhere.

    cairn worker examples.orders
    cairn trigger process-order --payload '{"order_id": "A-1", "amount": 42}' --wait
"""

from __future__ import annotations

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
