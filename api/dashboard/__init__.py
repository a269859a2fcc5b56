"""The dashboard served by the gateway at /dashboard: its HTML (page.py), the response-time
chart (chart.py), sign-in sessions (session.py), and the inlined dashboard.css and
dashboard.js. The routes are in routers/dashboard.py, the data in services/dashboard.py."""
