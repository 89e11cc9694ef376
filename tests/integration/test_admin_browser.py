"""The admin console in a real browser against a real daemon on loopback.

Debian's Chromium, driven by Playwright (harness: tests/admin_browser.py),
logs in with a token made by the ``actrix admin-token`` CLI and works the
console the way an operator does: watches the dashboard chart draw, finds an
actor that a real signaling client registered and revokes it through the
confirmation dialog while the client's WebSocket closes; suspends a realm
(its actor is thrown out, new registrations are refused); creates, edits
(meeting a concurrent edit, shown in words) and deletes a realm; adds and
removes an ACL rule; kicks a real room peer and closes its room; terminates a
real TURN allocation; reads the redacted config and reloads it; reads the
audit log and logs out. A read-only token sees the same pages with nothing
on them that changes anything.
"""

from __future__ import annotations

from typing import Any

from tests.admin_browser import DOOMED_REALM, REALM, AdminBrowserCase, Operator
from tests.daemon import SHARED_KEY

# Pixels of the series' colours (--c0, --c1: the lines may overlap) on a chart.
_LINE_PIXELS = """(figure) => {
  const canvas = figure.querySelector("canvas");
  const css = getComputedStyle(figure);
  const colours = ["--c0", "--c1"].map((name) => {
    const hex = css.getPropertyValue(name).trim();
    return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  });
  const ctx = canvas.getContext("2d");
  const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let count = 0;
  for (let i = 0; i < data.length; i += 4) {
    const near = colours.some((c) => Math.abs(data[i] - c[0])
      + Math.abs(data[i + 1] - c[1]) + Math.abs(data[i + 2] - c[2]) < 60);
    if (data[i + 3] > 200 && near) count += 1;
  }
  return count;
}"""


def _revoke_flow(page: Any, operator: Operator, result: dict[str, Any]) -> None:
    """A client registers, the chart draws it, the actor is found and revoked."""
    actor_id = operator.call(operator.register, REALM)
    result["actor_id"] = actor_id
    page.wait_for_function(
        "() => Number(document.querySelector('[data-metric=connections]')"
        ".textContent) >= 1"
    )
    chart = page.wait_for_selector("figure[data-chart=presence]")
    page.wait_for_function(
        "(f) => Number(f.querySelector('canvas').dataset.points) >= 12", arg=chart
    )
    result["line_pixels"] = page.evaluate(_LINE_PIXELS, chart)

    # Filters set through the form, as an operator would.
    page.click("#nav a[data-route=actors]")
    page.wait_for_selector(
        f"#list-actors-realm_id option[value='{REALM}']", state="attached"
    )
    page.select_option("#list-actors-realm_id", str(REALM))
    page.select_option("#list-actors-status", "online")
    row = page.locator(f'#list-actors-table tr[data-key="{actor_id}"]')
    row.wait_for()
    result["actor_row"] = row.inner_text()
    # Its detail page (the id holds '@', '/' and ':'), then back to the same list.
    row.get_by_role("link", name=actor_id).click()
    page.locator("dl.details", has_text=actor_id).wait_for()
    result["actor_detail"] = page.inner_text("dl.details")
    page.go_back()
    row.wait_for()
    result["list_after_back"] = page.url
    row.get_by_role("button", name=f"Revoke {actor_id}").click()
    dialog = page.locator("dialog[open]")
    dialog.wait_for()
    result["revoke_dialog"] = dialog.inner_text()
    page.fill("#f-reason", "browser test")
    page.click("#dialog-ok")
    row.wait_for(state="detached", timeout=5000)
    result["revoke_notice"] = page.locator(".notice.success").last.inner_text()
    result["close_code"] = operator.call(operator.closed, actor_id)
    page.click("#nav a[data-route=audit]")
    page.locator("#list-audit-table td", has_text="actor.revoke").first.wait_for()
    result["audit"] = page.inner_text("#list-audit-table tbody")


def _suspend_flow(page: Any, operator: Operator, result: dict[str, Any]) -> None:
    """A realm is suspended after confirmation; then the operator logs out."""
    actor_id = operator.call(operator.register, DOOMED_REALM)
    page.click("#nav a[data-route=realms]")
    realm_row = page.locator(f'#list-realms-table tr[data-key="{DOOMED_REALM}"]')
    # Escape cancels the confirmation: nothing happens.
    realm_row.get_by_role("button", name="Suspend doomed").click()
    page.locator("dialog[open]").wait_for()
    page.keyboard.press("Escape")
    page.locator("dialog").wait_for(state="detached")
    result["after_escape"] = operator.call(
        operator.api, "GET", f"realms/{DOOMED_REALM}"
    )
    realm_row.get_by_role("button", name="Suspend doomed").click()
    result["suspend_dialog"] = page.locator("dialog[open]").inner_text()
    page.click("#dialog-ok")
    realm_row.locator(".badge", has_text="Suspended").wait_for()
    result["close_code"] = operator.call(operator.closed, actor_id)
    result["suspended_refused"] = operator.call(operator.register_refused, DOOMED_REALM)
    page.click("#nav a[data-route=audit]")
    page.locator("#list-audit-table td", has_text="realm.suspend").first.wait_for()
    result["audit"] = page.inner_text("#list-audit-table tbody")
    page.click("#logout")
    page.wait_for_selector("#token")
    page.goto(page.url.split("#")[0] + "#/actors")
    page.wait_for_selector("#token")
    result["after_logout"] = page.url


def _manage_flow(page: Any, operator: Operator, result: dict[str, Any]) -> None:
    """Realms, ACL, rooms, TURN and node pages, each with a real effect."""
    # A realm: create, edit after someone else did (409 in words), delete.
    page.click("#nav a[data-route=realms]")
    page.click("#realm-new")
    page.fill("#f-name", "lab")
    page.fill("#f-id", "303")
    page.click("#dialog-ok")
    lab = page.locator('#list-realms-table tr[data-key="303"]')
    lab.wait_for()
    lab.get_by_role("button", name="Edit lab").click()
    operator.call(operator.rename_realm, 303, "lab-by-curl")
    page.fill("#f-name", "lab-2")
    page.click("#dialog-ok")
    conflict = page.locator("dialog[open] .dialog-error")
    conflict.wait_for()  # visible once the API has answered
    result["conflict"] = conflict.inner_text()
    page.click("#dialog-cancel")
    page.get_by_role("button", name="Refresh").click()
    lab.get_by_role("button", name="Edit lab-by-curl").click()
    page.fill("#f-name", "lab-2")
    page.click("#dialog-ok")
    lab.locator("td", has_text="lab-2").wait_for()
    lab.get_by_role("button", name="Delete lab-2").click()
    page.click("#dialog-ok")
    lab.wait_for(state="detached")
    result["realm_after_delete"] = operator.call(operator.api, "GET", "realms/303")

    # An ACL rule: add in the dialog, see it, remove it.
    page.click("#nav a[data-route=acl]")
    page.click("#acl-new")
    page.select_option("#f-realm_id", str(REALM))
    page.fill("#f-from_type", "acme:camera")
    page.fill("#f-to_type", "acme:hub")
    page.select_option("#f-permission", "deny")
    page.click("#dialog-ok")
    rule = page.locator("#list-acl-table tbody tr", has_text="acme:hub")
    rule.wait_for()
    result["rule"] = rule.inner_text()
    rule.get_by_role("button").click()
    page.click("#dialog-ok")
    rule.wait_for(state="detached")

    # A room with two real peers: kick one, then close the room.
    alice = operator.call(operator.join_room, "standup", "alice")
    bob = operator.call(operator.join_room, "standup", "bob")
    page.click("#nav a[data-route=rooms]")
    page.locator("#list-rooms-table a", has_text="standup").click()
    member = page.locator(f'#members tr[data-key="{bob}"]')
    member.get_by_role("button", name=f"Kick {bob}").click()
    page.click("#dialog-ok")
    member.wait_for(state="detached")
    result["kicked_code"] = operator.call(operator.peer_closed, bob)
    page.click("#room-close")
    page.click("#dialog-ok")
    page.wait_for_url("**#/rooms")
    page.locator("#list-rooms-table tr.empty").wait_for()
    result["closed_code"] = operator.call(operator.peer_closed, alice)

    # A TURN allocation: listed with its counters, terminated.
    client = operator.call(operator.allocate)
    page.click("#nav a[data-route=turn]")
    row = page.locator("#list-turn-allocations-table tbody tr", has_text=client)
    row.wait_for()
    result["allocation"] = row.inner_text()
    row.get_by_role("button", name="Terminate allocation of alice").click()
    page.click("#dialog-ok")
    row.wait_for(state="detached")
    result["allocations_after"] = operator.call(operator.api, "GET", "turn/allocations")

    # The node: config with secrets redacted, a reload.
    page.click("#nav a[data-route=node]")
    page.locator("#config td", has_text="actrix_shared_key").wait_for()
    result["config"] = page.inner_text("#config")
    page.click("#node-reload")
    page.click("#dialog-ok")
    result["reload"] = page.locator(".notice", has_text="reloaded").last.inner_text()


def _read_only_flow(page: Any, operator: Operator, result: dict[str, Any]) -> None:
    """A read-only token: the badge shows, and no page offers a change."""
    operator.call(operator.register, REALM)
    result["badge"] = page.is_visible("#who-ro")
    result["buttons"] = {}
    for route, ready in (
        ("realms", f'#list-realms-table tr[data-key="{REALM}"]'),
        ("actors", "#list-actors-table tbody tr[data-key]"),
        ("acl", "#list-acl-table tbody tr"),
        ("node", "#config"),
    ):
        page.click(f"#nav a[data-route={route}]")
        page.locator(ready).first.wait_for()
        result["buttons"][route] = page.locator("button.write").count()
    # The realm's row has its ACL link but no Edit/Suspend/Delete.
    page.click("#nav a[data-route=realms]")
    row = page.locator(f'#list-realms-table tr[data-key="{REALM}"]')
    row.wait_for()
    result["realm_row"] = row.inner_text()


class AdminConsoleBrowserTests(AdminBrowserCase):
    async def test_revoke_an_actor_seen_on_the_actors_page(self) -> None:
        """The chart draws a live client; revoking it closes its socket."""
        result = await self.operate(_revoke_flow)
        self.assertGreater(result["line_pixels"], 20)
        self.assertIn(result["actor_id"], result["actor_row"])
        self.assertIn("online", result["actor_detail"])
        self.assertIn("status=online", result["list_after_back"])
        self.assertIn(result["actor_id"], result["revoke_dialog"])
        self.assertIn("1 socket(s) closed", result["revoke_notice"])
        self.assertIsNotNone(result["close_code"])
        self.assertIn("actor.revoke", result["audit"])

    async def test_suspend_a_realm_then_log_out(self) -> None:
        """Suspending a realm disconnects its actor and refuses new ones."""
        result = await self.operate(_suspend_flow)
        self.assertEqual(result["after_escape"]["status"], "Normal")
        self.assertIn("doomed", result["suspend_dialog"])
        self.assertIsNotNone(result["close_code"])
        self.assertTrue(result["suspended_refused"])
        self.assertIn("realm.suspend", result["audit"])
        self.assertTrue(result["after_logout"].endswith("#/login"))

    async def test_manage_realms_acl_rooms_turn_and_node(self) -> None:
        """Every change made in the console takes effect on the daemon."""
        result = await self.operate(_manage_flow)
        self.assertIn("changed", result["conflict"].lower())
        self.assertEqual(result["realm_after_delete"]["error"], "not_found")
        self.assertIn("deny", result["rule"])
        self.assertIsNotNone(result["kicked_code"])
        self.assertIsNotNone(result["closed_code"])
        self.assertIn("alice", result["allocation"])
        self.assertEqual(result["allocations_after"]["total"], 0)
        self.assertIn("<redacted>", result["config"])
        self.assertNotIn(SHARED_KEY, result["config"])
        self.assertIn("reloaded", result["reload"])

    async def test_read_only_token_sees_nothing_to_change(self) -> None:
        """A read-only operator gets the badge and no buttons that change anything."""
        result = await self.operate(_read_only_flow, read_only=True)
        self.assertTrue(result["badge"])
        self.assertEqual(
            result["buttons"], {"realms": 0, "actors": 0, "acl": 0, "node": 0}
        )
        self.assertNotIn("Suspend", result["realm_row"])
        self.assertIn("ACL", result["realm_row"])
