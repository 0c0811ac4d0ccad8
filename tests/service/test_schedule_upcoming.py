"""A schedule shows its next fire times (Schedule.upcoming): the ones after
next_fire_at, by its cron expression and time zone, through HistoryService."""

from __future__ import annotations

from datetime import timedelta

from cairn.v1 import schedule_service_pb2 as spb

TASK = "upcoming-task"


async def test_a_schedule_lists_its_fire_times_after_the_next(services):
    await services.register(TASK)
    request = spb.CreateScheduleRequest(
        namespace=services.namespace, schedule_id="every-5m", task_id=TASK, cron="*/5 * * * *"
    )
    created = (await services.history.CreateSchedule(request, timeout=5)).schedule
    first = created.next_fire_at.ToDatetime()
    assert [t.ToDatetime() - first for t in created.upcoming] == [
        timedelta(minutes=5 * i) for i in range(1, 5)
    ]
    listed = await services.history.ListSchedules(
        spb.ListSchedulesRequest(namespace=services.namespace), timeout=5
    )
    (schedule,) = listed.schedules
    assert list(schedule.upcoming) == list(created.upcoming)
