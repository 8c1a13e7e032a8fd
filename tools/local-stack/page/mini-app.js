// The Mini App's passport view: the customer's machines and a service request for one.
// In Telegram, initData is Telegram.WebApp.initData; this preview asks the local signer.
(function () {
  "use strict";
  const API = window.RSS_API;
  const list = document.getElementById("passport-list");
  const errors = document.getElementById("tma-errors");
  const result = document.getElementById("tma-result");

  async function initData() {
    const fromTelegram = window.Telegram && window.Telegram.WebApp && window.Telegram.WebApp.initData;
    if (fromTelegram) return fromTelegram;
    const user = document.getElementById("tma-user").value.trim();
    const response = await fetch(`local/init-data?user=${encodeURIComponent(user)}`);
    if (!response.ok) throw new Error(await response.text());
    return response.text();
  }

  async function call(path, init = {}) {
    const headers = { ...(init.headers || {}), Authorization: `tma ${await initData()}` };
    const response = await fetch(`${API}${path}`, { ...init, headers });
    const answer = await response.json().catch(() => ({}));
    return { status: response.status, answer };
  }

  function show(machine) {
    const li = document.createElement("li");
    li.dataset.serial = machine.serial;
    const m = machine.maintenance;
    li.textContent = `${machine.model || "Станок"}, № ${machine.serial}: ${m.status_title}, следующее ТО до ${m.next_due} `;
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "Заявка на сервис";
    button.addEventListener("click", () => requestService(machine.serial));
    li.appendChild(button);
    list.appendChild(li);
  }

  async function openPassport() {
    errors.textContent = "";
    result.textContent = "";
    list.replaceChildren();
    try {
      const { status, answer } = await call("/passport");
      if (status !== 200) {
        errors.textContent = answer.message || "Паспорт недоступен.";
        return;
      }
      if (answer.equipment.length === 0) errors.textContent = "В паспорте пока нет оборудования.";
      answer.equipment.forEach(show);
    } catch (e) {
      errors.textContent = "Нет связи с сервером.";
    }
  }

  async function requestService(serial) {
    errors.textContent = "";
    const { status, answer } = await call("/passport/service-requests", {
      method: "POST",
      headers: { "Content-Type": "application/json", "Idempotency-Key": crypto.randomUUID() },
      body: JSON.stringify({ serial, message: "Заявка на сервис из Mini App" }),
    });
    if (status === 202) result.textContent = `Заявка на сервис принята, номер ${answer.lead_id}.`;
    else errors.textContent = answer.message || "Заявка не отправлена.";
  }

  document.getElementById("tma-open").addEventListener("click", openPassport);
})();
