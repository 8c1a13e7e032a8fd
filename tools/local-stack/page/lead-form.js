// The site's lead form, without a framework: copy it as it is.
//  - one Idempotency-Key per submission, reused by every retry of that submission;
//  - 503 (nothing stored) is retried after the Retry-After seconds the API asks for;
//  - each field error (Russian) is shown beside its field; success shows the lead's number.
(function () {
  "use strict";
  const API = window.RSS_API;
  const MAX_ATTEMPTS = 4;
  const form = document.getElementById("lead-form");
  const errors = document.getElementById("lead-errors");
  const result = document.getElementById("lead-result");

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function text(name) {
    const value = form.elements[name].value.trim();
    return value === "" ? undefined : value;
  }

  function clearErrors() {
    errors.textContent = "";
    result.textContent = "";
    for (const el of form.querySelectorAll("[data-error-for]")) el.textContent = "";
    for (const el of form.querySelectorAll(".invalid")) el.classList.remove("invalid");
  }

  // `fields` of a 400: [{field, message}] -> beside the field, or above the button.
  function showFieldErrors(fields) {
    const general = [];
    for (const { field, message } of fields) {
      const slot = form.querySelector(`[data-error-for="${CSS.escape(field)}"]`);
      if (slot) {
        slot.textContent = message;
        const input = slot.parentElement.querySelector("input, textarea, select");
        if (input) input.classList.add("invalid");
      } else {
        general.push(message);
      }
    }
    errors.textContent = general.join(" ");
  }

  // POST with retries: 503 after Retry-After, a network failure after a growing pause.
  async function postLead(body, idempotencyKey) {
    for (let attempt = 1; ; attempt++) {
      let response;
      try {
        response = await fetch(`${API}/leads`, {
          method: "POST",
          headers: { "Content-Type": "application/json", "Idempotency-Key": idempotencyKey },
          body: JSON.stringify(body),
        });
      } catch (networkError) {
        if (attempt >= MAX_ATTEMPTS) throw networkError;
        await sleep(1000 * 2 ** attempt);
        continue;
      }
      if (response.status !== 503 || attempt >= MAX_ATTEMPTS) return response;
      const seconds = Number(response.headers.get("Retry-After")) || 5;
      result.textContent = `Сервис занят, повторим через ${seconds} с…`;
      await sleep(seconds * 1000);
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    const model = text("model");
    const serial = text("serial");
    const body = {
      source: "site",
      intent: form.elements.intent.value,
      name: text("name"),
      phone: text("phone"),
      email: text("email"),
      message: text("message"),
      equipment: model || serial ? { model, serial } : undefined,
      page_url: location.href,
      website: form.elements.website.value,
    };
    try {
      const response = await postLead(body, crypto.randomUUID());
      const answer = await response.json().catch(() => ({}));
      if (response.status === 202) {
        result.textContent = `Заявка принята, номер ${answer.lead_id}. Мы свяжемся с вами.`;
        form.reset();
      } else if (answer.fields) {
        showFieldErrors(answer.fields);
      } else {
        // Every error body has a Russian `message` meant for the customer.
        errors.textContent = answer.message || "Не удалось отправить заявку. Попробуйте позже.";
      }
    } catch (networkError) {
      errors.textContent = "Нет связи с сервером. Проверьте интернет и попробуйте ещё раз.";
    } finally {
      button.disabled = false;
    }
  });
})();
