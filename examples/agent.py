"""An AI agent as a durable run: a (fake) model streams its tokens live, calls
two tools as checkpointed steps, and waits for a person to approve its plan
through a wait token before it acts.

Watch it think while it runs: every token is a chunk of the run's "tokens"
stream (`context.stream`) and every line of `context.logger` is stored on the
run, so `cairn runs watch` shows both as they happen and `cairn runs logs`
shows the lines afterwards. The tool calls are steps: kill the worker after
them and another one resumes without calling the tools again.

    cairn worker examples.agent
    cairn trigger research-agent --payload '{"question": "Which city should host the offsite?"}'
    cairn runs watch RUN_ID                      # tokens, tool calls, the wait
    cairn tokens complete TOKEN_ID --payload true   # the token id is in the log
    cairn runs logs RUN_ID

`token_delay` in the payload sets the seconds between two tokens (default 0.05).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from worker_sdk import context, step, task, wait

CITIES = {"Lisbon": 21, "Oslo": 7, "Vienna": 14}


async def _think(text: str, delay: float) -> str:
    """The fake model: streams `text` word by word, as a model streams tokens."""
    for word in text.split(" "):
        await context.stream("tokens", word + " ")
        await asyncio.sleep(delay)
    return text


@step()
async def search_venues(question: str) -> list[str]:
    """Tool 1: a search (here, a fixed list)."""
    context.logger.info("tool call: search_venues", extra={"tool": "search_venues", "question": question})
    return sorted(CITIES)


@step()
async def get_weather(cities: list[str]) -> dict[str, int]:
    """Tool 2: the weather forecast of each city (degrees Celsius)."""
    context.logger.info("tool call: get_weather", extra={"tool": "get_weather", "cities": cities})
    return {city: CITIES[city] for city in cities}


@task(id="research-agent")
async def research_agent(payload: dict) -> dict:
    question = payload.get("question", "Which city should host the offsite?")
    delay = float(payload.get("token_delay", 0.05))
    context.logger.info("question: %s", question)

    await _think("Let me look for venues first.", delay)
    cities = await search_venues(question)
    await _think(f"Found {len(cities)} cities. Checking the weather.", delay)
    weather = await get_weather(cities)
    best = max(weather, key=weather.__getitem__)
    plan = f"Book the offsite in {best} ({weather[best]} °C)."
    await _think(plan + " Asking for approval.", delay)

    token = await wait.create_token(timeout=timedelta(days=1))
    context.logger.info(
        "approve with: cairn tokens complete %s --payload true", token.id, extra={"token_id": token.id}
    )
    approved = await wait.for_token(token)
    if approved is not True:
        await _think("Not approved: nothing booked.", delay)
        return {"question": question, "plan": plan, "approved": False}
    await _think(f"Approved. Booking {best}.", delay)
    return {"question": question, "plan": plan, "approved": True, "city": best}
