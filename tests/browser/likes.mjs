// Two users in two browser pages: the first likes the second's post, and
// the second page shows the notification with no reload.
//
//   node tests/browser/likes.mjs BASE_URL SCREENSHOT.png
//
// Uses Debian's Chromium (CHROMIUM, /usr/bin/chromium by default).
import { chromium } from "playwright-core";

const [base, screenshot] = process.argv.slice(2);
if (!base || !screenshot) {
  console.error("usage: node likes.mjs BASE_URL SCREENSHOT.png");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
try {
  const api = async (method, path, body) => {
    const response = await fetch(base + path, {
      method,
      headers: { "content-type": "application/json" },
      body: body && JSON.stringify(body),
    });
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
    return response.json();
  };
  const erin = await api("POST", "/api/users", { name: "erin" });
  const frank = await api("POST", "/api/users", { name: "frank" });
  const post = await api("POST", "/api/posts", { author: frank.id, text: "frank's post, to be liked" });

  const open = async (user) => {
    const page = await (await browser.newContext({ viewport: { width: 1000, height: 700 } })).newPage();
    page.on("pageerror", (e) => console.error(`page error (${user.name}): ${e}`));
    await page.goto(base + "/");
    await page.getByTestId("me").locator(`option[value="${user.id}"]`).waitFor({ state: "attached" });
    await page.getByTestId("me").selectOption(String(user.id));
    await page.getByTestId("status").filter({ hasText: `live as ${user.name}` }).waitFor({ timeout: 10000 });
    return page;
  };
  const erinPage = await open(erin);
  const frankPage = await open(frank);
  const before = await frankPage.getByTestId("notification").count();

  await erinPage.getByTestId(`like-${post.id}`).click();
  const note = frankPage.getByTestId("notification").filter({ hasText: `erin liked your post #${post.id}` });
  await note.waitFor({ timeout: 10000 });
  const after = await frankPage.getByTestId("notification").count();
  if (after !== before + 1) throw new Error(`expected ${before + 1} notifications, saw ${after}`);
  // The like count on frank's page followed too, still without a reload.
  await frankPage.getByTestId(`likes-${post.id}`).filter({ hasText: "1" }).waitFor({ timeout: 10000 });
  await frankPage.screenshot({ path: screenshot, fullPage: true });
  console.log(`ok: frank saw "${await note.textContent()}"`);
} finally {
  await browser.close();
}
