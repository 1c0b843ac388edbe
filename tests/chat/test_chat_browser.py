"""The chat room in a real browser (Debian's headless chromium through playwright): two
users chat at once, each page shows "处理中..." and then its own reply only. Screenshots go
under the test's tmp_path (chat-alice.png, chat-bob.png)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.conftest import CHROMIUM, need_browser
from tests.chat.conftest import Procs

pytestmark = pytest.mark.browser


async def test_two_users_chat_in_the_browser(procs: Procs, namespace: str,
                                             tmp_path: Path) -> None:
    need_browser()
    from playwright.async_api import async_playwright, expect

    web = await procs.web(None, namespace, workers=4)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM),
                                           args=["--no-sandbox"])
        try:
            pages = {}
            chats = (("alice", "你好，请介绍一下异步处理"), ("bob", "任务队列有什么用？"))
            for user, message in chats:
                page = await browser.new_page(viewport={"width": 900, "height": 700})
                await page.goto(f"{web.url}/?user={user}")
                await expect(page.locator("#status")).to_have_text("已连接", timeout=15_000)
                await page.fill("#text", message)
                await page.press("#text", "Enter")
                # At once: the reply bubble says 处理中... (the simulated AI takes ~0.5 s to
                # its first token), then the text streams in.
                await expect(page.locator(".msg.ai")).to_have_text(["处理中..."])
                pages[user] = (page, message)
            alice = pages["alice"][0]
            await expect(alice.locator(".meta").last).to_have_text("生成中...取消",
                                                                   timeout=15_000)
            await alice.screenshot(path=str(tmp_path / "chat-alice-streaming.png"))
            for user, (page, message) in pages.items():
                await expect(page.locator(".msg.me")).to_have_text([message])
                await expect(page.locator(".meta").last).to_have_text("完成", timeout=30_000)
                reply = await page.locator(".msg.ai").last.inner_text()
                assert len(reply) > 10 and reply != "处理中..."
                await page.screenshot(path=str(tmp_path / f"chat-{user}.png"), full_page=True)
            alice_text = await pages["alice"][0].locator("#log").inner_text()
            assert pages["bob"][1] not in alice_text  # nobody sees another's chat
            bob_text = await pages["bob"][0].locator("#log").inner_text()
            assert pages["alice"][1] not in bob_text
            # A reload shows the same conversation again (finished replies from the page's
            # storage; an unfinished one is followed again from its first event).
            page = pages["alice"][0]
            before = await page.locator(".msg.ai").last.inner_text()
            await page.reload()
            await expect(page.locator(".msg.ai").last).to_have_text(before, timeout=15_000)
        finally:
            await browser.close()
