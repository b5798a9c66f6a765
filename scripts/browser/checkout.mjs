// Pays on the Stripe emulator's checkout page in headless Chromium, as a
// customer would: choose the 4242 test card, press Pay, wait for the
// answer, take a screenshot.
//   node checkout.mjs <checkout-url> <screenshot.png> [payment_method]
import { chromium } from 'playwright-core';

const [, , url, screenshot, method = 'pm_card_visa'] = process.argv;
if (!url || !screenshot) {
  console.error('usage: node checkout.mjs <checkout-url> <screenshot.png> [payment_method]');
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  // The flags this machine needs: no sandbox as root, and no background
  // traffic to hosts that the closed network refuses.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage({ viewport: { width: 640, height: 820 } });
  await page.goto(url);
  await page.check(`input[value="${method}"]`);
  await page.screenshot({ path: screenshot.replace(/\.png$/, '-before.png'), fullPage: true });
  await page.click('#submit');
  await page.waitForSelector('#result.ok, #result.err', { timeout: 15000 });
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify({ result: (await page.textContent('#result')).trim() }));
} finally {
  await browser.close();
}
