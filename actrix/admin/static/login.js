// Log in with an admin token (created by `actrix admin-token create`). The
// token goes to POST /login once; the browser then holds an HttpOnly cookie.

import * as api from "./api.js";
import { h, replace } from "./dom.js";
import { loggedIn } from "./nav.js";

export function render(view) {
  const error = h("p", { id: "login-error", class: "form-error", role: "alert", hidden: true });
  const token = h("input", {
    id: "token", name: "token", type: "password", required: true, autocomplete: "off",
    spellcheck: "false", maxlength: 512, "aria-describedby": "token-hint login-error",
  });
  const submit = h("button", { id: "login-submit", type: "submit" }, "Log in");
  const form = h("form", { id: "login-form", class: "card login" },
    h("h1", {}, "actrix admin"),
    h("div", { class: "field" },
      h("label", { for: "token" }, "Admin token"),
      token,
      h("small", { id: "token-hint", class: "hint" },
        "Create one on the server with ", h("code", {}, "actrix admin-token create --name NAME"), ".")),
    error,
    submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = token.value.trim();
    if (!value) {
      replace(error, "Enter an admin token.");
      error.hidden = false;
      token.focus();
      return;
    }
    submit.disabled = true;
    error.hidden = true;
    try {
      await api.login(value);
      token.value = "";
      loggedIn();
    } catch (err) {
      replace(error, err.message);
      error.hidden = false;
      token.select();
    } finally {
      submit.disabled = false;
    }
  });
  view.append(h("div", { class: "login-wrap" }, form));
  token.focus();
}
