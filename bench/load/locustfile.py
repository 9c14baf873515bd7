"""50 listeners at once: browse the catalog, open tracks, rate them, read their feeds, ask for similar
tracks and, now and then, for new melodies (bench/load_bench.py runs this headless)."""

from __future__ import annotations

import random
import uuid

from locust import HttpUser, between, task

TRACK_IDS: list[int] = []


class Listener(HttpUser):
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        name = f"load-{uuid.uuid4().hex[:12]}"
        response = self.client.post(
            "/api/v1/auth/register/", json={"username": name, "password": f"pass-{uuid.uuid4().hex}"}, name="register"
        )
        token = response.json().get("token", "") if response.ok else ""
        self.client.headers["Authorization"] = f"Token {token}"
        if not TRACK_IDS:
            page = self.client.get("/api/v1/tracks/?page_size=100", name="/tracks/ [list]").json()
            TRACK_IDS.extend(item["id"] for item in page.get("results", []))

    def _track(self) -> int:
        return random.choice(TRACK_IDS) if TRACK_IDS else 1

    @task(4)
    def browse(self) -> None:
        self.client.get(f"/api/v1/tracks/?page={random.randint(1, 5)}", name="/tracks/ [list]")

    @task(3)
    def detail(self) -> None:
        self.client.get(f"/api/v1/tracks/{self._track()}/", name="/tracks/{id}/")

    @task(2)
    def rate(self) -> None:
        self.client.put(
            f"/api/v1/tracks/{self._track()}/rating/", json={"score": random.randint(1, 5)}, name="/tracks/{id}/rating/"
        )

    @task(2)
    def feed(self) -> None:
        kind = random.choice(["recommended", "mixed"])
        self.client.get(f"/api/v1/feed/?kind={kind}", name="/feed/")

    @task(2)
    def similar(self) -> None:
        with self.client.get(
            f"/api/v1/tracks/{self._track()}/similar/", name="/tracks/{id}/similar/", catch_response=True
        ) as response:
            if response.status_code == 409:  # not embedded yet: a documented answer, not an error
                response.success()

    @task(1)
    def generate(self) -> None:
        self.client.post(
            "/api/v1/generations/",
            json={"kind": "sample", "count": 2},
            headers={"Idempotency-Key": uuid.uuid4().hex},
            name="/generations/",
        )
