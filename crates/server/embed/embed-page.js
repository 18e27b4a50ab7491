// The embed page (GET /embed/{project}/{dashboard}?kid=…#token=…): hands the credential in the URL's
// fragment — which the browser never sends to a server — to the page's <keyhole-dashboard>, which draws
// the dashboard with it. Everything else is the element's (keyhole-dashboard.js).
(() => {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const element = document.getElementById('dashboard');
  element.setAttribute('host', location.origin);
  element.setAttribute('token', fragment.get('token') || '');
})();
